"""Short automatic labels: what a feature fires on (its top contexts' tokens) and what it promotes (its decoder
direction read through the unembedding, after the final norm's gain: a logit-lens view of the feature)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..scope import Scope


def _unembedding_with_gain(scope: "Scope") -> torch.Tensor:
    from ..model_layers import unembedding

    W_U = unembedding(scope.model).detach()  # (vocab, d_model)
    norm = getattr(getattr(scope.model, "model", None), "norm", None)
    gain = getattr(norm, "weight", None)
    if gain is not None:
        gain = gain.detach().to(W_U.device, torch.float32)
        if type(norm).__name__.startswith("Qwen3_5"):
            gain = 1.0 + gain  # Qwen3.5's zero-centred RMSNorm scales by (1 + weight)
        return W_U * gain.to(W_U.dtype)
    return W_U


def logit_token_cost(scope: "Scope", layer: int, n_features: int) -> float:
    """FLOPs of reading ``n_features`` decoder directions through the unembedding."""
    W = scope.model.get_output_embeddings().weight
    return 2.0 * W.shape[0] * W.shape[1] * n_features


@torch.inference_mode()
def decoder_logit_tokens(scope: "Scope", layer: int, vocab: list[str], n: int = 5, chunk: int = 1024,
                         features: "torch.Tensor | list[int] | None" = None
                         ) -> tuple[list[list[str]], list[list[str]]]:
    """The ``n`` tokens each feature's decoder direction promotes most and suppresses most: top / bottom of
    ``W_U @ W_dec[:, f]`` (the output embedding, tied or not, times the final norm's gain). ``features``: only
    these (default all); returns one list per requested feature, in order."""
    sae = scope.sae(layer)
    W_U = _unembedding_with_gain(scope)
    chunk = max(1, min(chunk, 2**27 // W_U.shape[0]))  # (vocab, chunk) float32 logits: 512 MB at most
    feats = torch.arange(sae.d_sae) if features is None else torch.as_tensor(features, dtype=torch.long)
    promoted: list[list[str]] = []
    suppressed: list[list[str]] = []
    for s in range(0, len(feats), chunk):
        idx = feats[s:s + chunk].to(sae.W_dec.device)
        d = sae.W_dec[:, idx].T.to(W_U.device, W_U.dtype)  # (c, d_model)
        logits = (d @ W_U.T).float()  # (c, vocab): top-k along the contiguous dimension
        top = logits.topk(n, dim=1).indices.cpu().tolist()
        bot = logits.topk(n, dim=1, largest=False).indices.cpu().tolist()
        promoted += [[vocab[i] for i in row] for row in top]
        suppressed += [[vocab[i] for i in row] for row in bot]
    return promoted, suppressed


def _clean(tok: str) -> str:
    t = tok.replace("\n", "\\n").strip()
    return t if t else repr(tok)


def auto_labels(features: "pd.DataFrame") -> list[str]:
    """``"God / LORD / heaven → unto, hath"``: fires-on tokens, then promoted tokens; "dead" when it never fired."""
    out = []
    for count, top, prom in zip(features["count"], features.top_tokens, features.promoted):
        if count == 0:
            out.append("dead (never fired on the corpus)")
            continue
        fires = " / ".join(dict.fromkeys(_clean(t) for t in list(top)[:3]))
        promotes = ", ".join(_clean(t) for t in list(prom)[:2])
        out.append(f"{fires} → {promotes}" if promotes else fires)
    return out


# ================================================================================================ scored labels
# A label is a claim: "this feature fires on these tokens (in this kind of text, after this token)". Fitted on one
# sample of text, the claim becomes a predicate over token positions, and its detection score on *another* sample
# is how well the predicate predicts where the feature fires: precision (of positions the label names, the share
# where it fires), recall (of positions where it fires, the share the label names), F1. In the spirit of
# Neuronpedia's detection scoring, but computed exactly over every token rather than by asking a model.

WEAK_BELOW = 0.4  # F1 under which a label is marked weak
MIN_FIRES = 5  # fewer firings than this on the scoring text: the label is unscored (NaN), and so weak


@dataclass
class TokenFirings:
    """Where every feature of one layer fires on a text sample, sparse: one row per (token position, active
    feature). ``tokens`` / ``prev`` (previous token, -1 at a window start) / ``group`` are per position; positions
    0 of each window (attention sinks) are left out everywhere."""

    layer: int
    d_sae: int
    tokens: "np.ndarray"  # (N,) int64
    prev: "np.ndarray"  # (N,) int64
    group: "np.ndarray"  # (N,) int64 index into group_names
    group_names: list[str]
    feature: "np.ndarray"  # (M,) int64, sorted
    position: "np.ndarray"  # (M,) int64 into tokens
    activation: "np.ndarray"  # (M,) float32
    doc: "np.ndarray" = None  # (N,) document index (for showing contexts)

    def __post_init__(self) -> None:
        import numpy as np

        self._starts = np.searchsorted(self.feature, np.arange(self.d_sae + 1))

    @property
    def n_tokens(self) -> int:
        return int(len(self.tokens))

    def fires(self, feature: int) -> tuple["np.ndarray", "np.ndarray"]:
        """Positions where ``feature`` fires and its activations there."""
        a, b = self._starts[feature], self._starts[feature + 1]
        return self.position[a:b], self.activation[a:b]


@torch.inference_mode()
def scan_firings(scope: "Scope", layer: int, texts: "list[str]", groups: "list[str] | None" = None, *,
                 chunk_len: int = 128, batch_size: int = 16) -> TokenFirings:
    """Run ``texts`` (documents; ``groups``: one name per document, e.g. a genre) through the model and the SAE of
    ``layer``; record every firing. Documents are cut into ``chunk_len``-token windows."""
    import numpy as np

    from ..errors import QScopeError

    if isinstance(texts, str) or not len(texts):
        raise QScopeError("scan_firings needs a non-empty list of documents")
    groups = list(groups) if groups is not None else ["all"] * len(texts)
    if len(groups) != len(texts):
        raise QScopeError(f"{len(groups)} group names for {len(texts)} documents")
    names = sorted(set(groups))
    windows, wgroup, wdoc = [], [], []
    for d, (t, g) in enumerate(zip(texts, groups)):
        ids = scope.tokenizer(t, add_special_tokens=False)["input_ids"]
        for s in range(0, len(ids) - 1, chunk_len):
            w = ids[s:s + chunk_len]
            if len(w) >= 2:
                windows.append(w)
                wgroup.append(names.index(g))
                wdoc.append(d)
    sae = scope.sae(layer)
    toks, prev, grp, doc, feat, pos, act = [], [], [], [], [], [], []
    n = 0
    for i in range(0, len(windows), batch_size):
        batch = windows[i:i + batch_size]
        width = max(len(w) for w in batch)
        pad = scope.tokenizer.pad_token_id if scope.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([w + [pad] * (width - len(w)) for w in batch])
        mask = torch.tensor([[1] * len(w) + [0] * (width - len(w)) for w in batch])
        res = scope.residuals(ids, attention_mask=mask, layers=[layer])[layer]
        for j, w in enumerate(batch):
            x = res[j, 1:len(w)].to(sae.dtype)  # position 0 left out
            codes = sae.encode_sparse(x)
            live = (codes.values > 0).cpu()
            r = torch.arange(x.shape[0])[:, None].expand_as(codes.ids)[live]
            feat.append(codes.ids.cpu()[live].numpy())
            pos.append((r + n).numpy())
            act.append(codes.values.float().cpu()[live].numpy())
            toks.append(np.asarray(w[1:], dtype=np.int64))
            prev.append(np.asarray(w[:-1], dtype=np.int64))
            grp.append(np.full(len(w) - 1, wgroup[i + j], dtype=np.int64))
            doc.append(np.full(len(w) - 1, wdoc[i + j], dtype=np.int64))
            n += len(w) - 1
    feat_a, pos_a, act_a = np.concatenate(feat), np.concatenate(pos), np.concatenate(act)
    order = np.argsort(feat_a, kind="stable")
    return TokenFirings(layer=layer, d_sae=sae.d_sae, tokens=np.concatenate(toks), prev=np.concatenate(prev),
                        group=np.concatenate(grp), group_names=names, feature=feat_a[order], position=pos_a[order],
                        activation=act_a[order], doc=np.concatenate(doc))


@dataclass(frozen=True)
class LabelSpec:
    """What a label claims: fires on ``tokens`` [in ``group`` text] [right after ``prev``]."""

    tokens: tuple  # token ids
    group: str | None = None
    prev: int | None = None

    def predict(self, f: TokenFirings) -> "np.ndarray":
        import numpy as np

        m = np.isin(f.tokens, np.asarray(self.tokens, dtype=np.int64))
        if self.group is not None:
            gi = f.group_names.index(self.group) if self.group in f.group_names else -1
            m &= f.group == gi
        if self.prev is not None:
            m &= f.prev == self.prev
        return m

    def text(self, vocab: "list[str]", promoted: "list[str] | None" = None) -> str:
        fires = " / ".join(dict.fromkeys(_clean(vocab[t]) for t in self.tokens))
        if self.prev is not None:
            fires += f" after {_clean(vocab[self.prev])}"
        if self.group is not None:
            fires += f" (in {self.group} text)"
        promotes = ", ".join(_clean(t) for t in list(promoted or [])[:2])
        return f"{fires} → {promotes}" if promotes else fires


def detection_score(spec: LabelSpec | None, f: TokenFirings, feature: int) -> dict[str, float]:
    """Precision, recall and F1 of ``spec``'s predicate against where ``feature`` fires on ``f``'s text."""
    import numpy as np

    pos, _ = f.fires(feature)
    fired = np.zeros(f.n_tokens, dtype=bool)
    fired[pos] = True
    n_fire = int(fired.sum())
    if spec is None:
        return {"precision": float("nan"), "recall": float("nan"), "f1": float("nan"), "fires": n_fire,
                "predicted": 0}
    pred = spec.predict(f)
    tp = int((pred & fired).sum())
    n_pred = int(pred.sum())
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_fire if n_fire else float("nan")
    f1 = 2 * p * r / (p + r) if n_fire and (p + r) > 0 else (0.0 if n_fire else float("nan"))
    return {"precision": p, "recall": r, "f1": f1, "fires": n_fire, "predicted": n_pred}


def _f1(tp: float, n_pred: float, n_fire: float) -> float:
    return 2 * tp / (n_pred + n_fire) if (n_pred + n_fire) else 0.0


def fit_label(f: TokenFirings, feature: int, *, max_tokens: int = 3, min_gain: float = 0.02) -> LabelSpec | None:
    """The label that best predicts (F1) where ``feature`` fires on ``f``'s text, using every firing (not only
    the top ones): up to ``max_tokens`` firing tokens, then the text group and the previous token, each kept only
    when it raises F1 by ``min_gain``. ``None`` when the feature never fires on the text."""
    import numpy as np

    pos, _ = f.fires(feature)
    if len(pos) == 0:
        return None
    n_fire = len(pos)
    fired = np.zeros(f.n_tokens, dtype=bool)
    fired[pos] = True
    ftok = np.bincount(f.tokens[pos])
    occ = np.bincount(f.tokens, minlength=len(ftok))[:len(ftok)]
    cands = np.argsort(-ftok)[:8 * max_tokens]
    chosen: list[int] = []
    tp = n_pred = 0
    best = 0.0
    for t in cands:  # greedy: add the candidate token that keeps raising F1
        if ftok[t] == 0 or len(chosen) >= max_tokens:
            break
        f1 = _f1(tp + ftok[t], n_pred + occ[t], n_fire)
        if f1 > best + (min_gain if chosen else 0.0):
            chosen.append(int(t))
            tp, n_pred, best = tp + ftok[t], n_pred + occ[t], f1
    spec = LabelSpec(tokens=tuple(chosen))
    pred = spec.predict(f)
    for refine in ("group", "prev"):
        hits = pred & fired
        if not hits.any():
            break
        if refine == "group":
            g = int(np.bincount(f.group[hits]).argmax())
            trial = LabelSpec(spec.tokens, f.group_names[g], spec.prev)
        else:
            p = int(np.bincount(np.maximum(f.prev[hits], 0)).argmax())
            trial = LabelSpec(spec.tokens, spec.group, p)
        tpred = trial.predict(f)
        f1 = _f1(int((tpred & fired).sum()), int(tpred.sum()), n_fire)
        if f1 > best + min_gain:
            spec, pred, best = trial, tpred, f1
    return spec


def _examples_across_range(f: TokenFirings, feature: int, vocab: "list[str]", n: int = 3,
                           width: int = 6) -> list[str]:
    """One context per activation tercile (low, middle, high): what the feature does beyond its top examples."""
    import numpy as np

    pos, act = f.fires(feature)
    if len(pos) == 0:
        return []
    order = np.argsort(act)
    out = []
    for q in range(n):
        i = order[min(len(order) - 1, int((q + 0.5) * len(order) / n))]
        p = int(pos[i])
        lo = p
        while lo > 0 and p - lo < width and f.doc[lo - 1] == f.doc[p]:
            lo -= 1
        left = "".join(vocab[t] for t in f.tokens[lo:p])
        out.append(f"{left}⟦{vocab[int(f.tokens[p])]}⟧ ({float(act[i]):.1f})".replace("\n", "⏎"))
    return out


def token_ids_of(strings: "list[str]", vocab: "list[str]") -> tuple:
    """Token ids whose readable string is one of ``strings`` (how the index stores top tokens)."""
    want = set(strings)
    return tuple(i for i, s in enumerate(vocab) if s in want)


def score_labels(scope: "Scope", layer: int, fit: TokenFirings, held: TokenFirings, *, index: Any = None,
                 features: "list[int] | None" = None, vocab: "list[str] | None" = None) -> "pd.DataFrame":
    """Fit a label per feature on ``fit`` and score it on ``held`` (other text); with ``index``, score the
    index's existing label (its top tokens) on ``held`` too. Columns: ``feature``, ``scored_label``,
    ``label_score`` (F1 on ``held``; NaN when the feature fires fewer than MIN_FIRES times there),
    ``label_precision``, ``label_recall``, ``label_fires``, ``label_weak``, ``old_label_score``, ``examples``."""
    import numpy as np
    import pandas as pd

    from ..errors import QScopeError

    if fit.layer != layer or held.layer != layer:
        raise QScopeError(f"firings of layers {fit.layer} / {held.layer} cannot score layer {layer}'s labels")
    if vocab is None:
        vocab = scope.token_strings(list(range(len(scope.tokenizer))))
    feats = range(fit.d_sae) if features is None else [scope.sae(layer).check_feature(x) for x in features]
    idx_feats = index.features(layer) if index is not None else None
    rows = []
    for x in feats:
        spec = fit_label(fit, x)
        s = detection_score(spec, held, x)
        scored = s["fires"] >= MIN_FIRES and spec is not None
        promoted = list(idx_feats.promoted.iloc[x]) if idx_feats is not None else []
        old = float("nan")
        if idx_feats is not None and int(idx_feats["count"].iloc[x]) > 0:
            old_spec = LabelSpec(token_ids_of([str(t) for t in list(idx_feats.top_tokens.iloc[x])[:3]], vocab))
            o = detection_score(old_spec, held, x)
            old = o["f1"] if o["fires"] >= MIN_FIRES else float("nan")
        rows.append({
            "feature": x,
            "scored_label": spec.text(vocab, promoted) if spec is not None else "(does not fire on the fit text)",
            "label_score": s["f1"] if scored else float("nan"),
            "label_precision": s["precision"] if scored else float("nan"),
            "label_recall": s["recall"] if scored else float("nan"),
            "label_fires": s["fires"],
            "label_weak": (not scored) or s["f1"] < WEAK_BELOW,
            "old_label_score": old,
            "examples": _examples_across_range(fit, x, vocab),
        })
    return pd.DataFrame(rows).astype({"label_score": float, "old_label_score": float})


# ================================================================================================ explain & simulate
# Bills et al. 2023 ("Language models can explain neurons in language models"): an explainer model reads a
# feature's top contexts with activations (scaled 0-10) and writes an explanation; then, given only the
# explanation, it *simulates* the activation of every token of other contexts; the explanation's score is the
# correlation of simulated with true activations. Here the explainer is any Scope (the loaded model by default);
# the mechanics are exact, the quality is the explainer's: a small model writes poor explanations that score ~0.

EXPLAIN_HEAD = ("We are studying features of a language model. Each feature looks for a particular pattern in "
                "text. Look at the tokens the feature activates on (activation 0-10 after each token) and say what "
                "it looks for.\n\n")
SIMULATE_HEAD = ("We are studying features of a language model. For each token, predict the feature's activation "
                 "(0-10) from this explanation of what it looks for.\n\n")


def _scaled(acts: "list[float]", top: float) -> list[int]:
    return [int(round(10 * max(a, 0.0) / top)) if top > 0 else 0 for a in acts]


def explanation_prompt(contexts: "pd.DataFrame", top: float) -> str:
    """Bills et al.'s explanation prompt: each context as ``token<TAB>activation`` lines, then the question."""
    parts = [EXPLAIN_HEAD]
    for i, r in enumerate(contexts.itertuples()):
        parts.append(f"Excerpt {i + 1}:\n")
        parts += [f"{t}\t{a}\n" for t, a in zip(r.tokens, _scaled(list(r.acts), top))]
        parts.append("\n")
    parts.append("Explanation: this feature activates on")
    return "".join(parts)


@torch.inference_mode()
def simulate(explainer: "Scope", explanation: str, tokens: "list[str]", *, max_tokens: int | None = None) -> list[float]:
    """Expected 0-9 activation the explainer predicts for each token, given only ``explanation``: one forward
    over ``token<TAB>unknown`` lines (Bills et al.'s all-at-once simulation), reading the distribution over the
    digit tokens at each ``<TAB>``."""
    from ..errors import QScopeError

    tok = explainer.tokenizer
    digits = []
    for d in range(10):
        ids = tok(str(d), add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise QScopeError(f"the explainer's tokenizer splits the digit {d} into {len(ids)} tokens: cannot simulate")
        digits.append(ids[0])
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    ids = enc(SIMULATE_HEAD + f"Explanation: this feature activates on{explanation}\n\nTokens:\n")
    read_at = []
    for t in tokens[:max_tokens]:
        ids += enc(f"{t}\t")
        read_at.append(len(ids) - 1)
        ids += enc("unknown\n")
    limit = explainer.max_context or len(ids)
    if len(ids) > limit:
        raise QScopeError(f"the simulation prompt has {len(ids)} tokens, more than the explainer's context of {limit}")
    logits = explainer.model(input_ids=torch.tensor([ids], device=explainer.device), use_cache=False).logits[0]
    p = logits[read_at][:, digits].float().softmax(-1)
    return (p @ torch.arange(10, dtype=torch.float32, device=p.device)).cpu().tolist()


def _pearson(a: "list[float]", b: "list[float]") -> float:
    x, y = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    x, y = x - x.mean(), y - y.mean()
    den = float(x.norm() * y.norm())
    return float((x * y).sum()) / den if den > 0 else float("nan")


def explain_features(index: Any, layer: int, features: "list[int]", *, explainer: "Scope | None" = None,
                     n_explain: int = 5, max_new_tokens: int = 16, save: bool = False) -> "pd.DataFrame":
    """Explain each feature from its ``n_explain`` top contexts, then score the explanation by simulating the
    activations of its remaining contexts (Pearson correlation, the paper's score). ``explainer``: a Scope
    (default: the index's). ``save``: store the explanations in the index (its ``explanation`` column)."""
    import pandas as pd

    from ..errors import QScopeError

    explainer = explainer if explainer is not None else index.scope
    if explainer is None:
        raise QScopeError("explain needs an explainer model: pass explainer=scope or index.attach_scope(scope)")
    if isinstance(features, int):
        features = [features]
    rows = []
    for f in features:
        ctx = index.contexts(layer, f)
        if len(ctx) <= n_explain:
            raise QScopeError(f"feature {f} of layer {layer} has {len(ctx)} contexts; explaining from {n_explain} "
                              "and scoring on the rest needs more")
        top = float(ctx.activation.max())
        shown, held = ctx.iloc[:n_explain], ctx.iloc[n_explain:]
        g = explainer.generate(explanation_prompt(shown, top), max_new_tokens=max_new_tokens, baseline=False,
                               temperature=0.0)
        text = g.text.split("\n")[0].rstrip()
        sim, true = [], []
        for r in held.itertuples():
            sim += simulate(explainer, text, list(r.tokens))
            true += [max(float(a), 0.0) for a in r.acts]
        rows.append({"layer": layer, "feature": int(f), "explanation": text.strip(),
                     "simulation_score": _pearson(sim, true), "explainer": getattr(explainer, "name", "")})
    df = pd.DataFrame(rows)
    if save and len(df):
        index.attach_labels(dict(zip(df.feature, df.explanation)), layer=layer)
    return df


# ================================================================================================ Neuronpedia
# Neuronpedia hosts Qwen-Scope features for some releases and layers. A feature's page is
# https://www.neuronpedia.org/{model_id}/{sae_id}/{index}; explanations of a whole SAE export from
# /api/explanation/export?modelId=...&saeId=... as a JSON list of {modelId, layer (the sae id), index,
# description, explanationModelName, typeName, ...}, which FeatureIndex.attach_labels(path, layer=n) reads.
NEURONPEDIA = "https://www.neuronpedia.org"
NEURONPEDIA_HOSTED = {  # (Neuronpedia model id, layer) -> sae id; extend as releases are hosted
    ("qwen3.5-27b", 31): "31-qwenscope-res-80k",
    ("qwen3.5-2b-pt", 11): "11-qwenscope-res-32k",
    ("qwen3.5-9b-pt", 15): "15-qwenscope-res-64k",
}


def neuronpedia_url(model_id: str, layer: int, feature: int, sae_id: str | None = None) -> str | None:
    """The Neuronpedia page of a feature of a hosted release (``None`` when the layer is not known to be hosted;
    pass ``sae_id`` for one this table does not list)."""
    from ..errors import QScopeError

    if isinstance(feature, bool) or not isinstance(feature, int) or feature < 0:
        raise QScopeError(f"feature must be an int >= 0, got {feature!r}")
    sae_id = sae_id or NEURONPEDIA_HOSTED.get((str(model_id).lower(), int(layer)))
    return None if sae_id is None else f"{NEURONPEDIA}/{str(model_id).lower()}/{sae_id}/{feature}"


def neuronpedia_export_url(model_id: str, sae_id: str) -> str:
    """Where Neuronpedia serves the explanation export of one SAE (download it, then ``attach_labels``)."""
    from urllib.parse import urlencode

    return f"{NEURONPEDIA}/api/explanation/export?" + urlencode({"modelId": model_id, "saeId": sae_id})
