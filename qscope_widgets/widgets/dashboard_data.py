"""What a feature dashboard shows, as pure functions of a Scope (no widget, no traitlets).

One function builds the dashboard's dict for both places a dashboard appears: the standalone
:class:`~qscope_widgets.widgets.FeatureDashboard` (``scope.feature(layer, id)``) and the Explorer's ``dashboard``
panel (``widgets/dashboard_panel.py``). Besides the index's card it groups the index's uniform random sample of
the feature's firings (``"samples"``, when the index has them) into activation bands, so a dashboard shows what
the feature does at a quarter of its maximum, not only at its peak; runs a text of the user's own and reports the
feature's activation on each token; and turns a context back into a prompt the explorer can open.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from ..errors import PromptError, QScopeError
from ..validate import format_feature_url
from .owned_cache import OwnedLRU

N_BANDS = 4          # equal-width activation bands over [0, max_activation]
PER_BAND = 3         # sampled contexts shown per band
MAX_TRY_CHARS = 20_000  # a try-your-own text longer than this is refused before tokenizing
NO_SAMPLES_NOTE = ("this index has no sampled contexts (it was built before range sampling): only the top "
                   "contexts are shown; rebuild the index to see contexts from several activation ranges")
EMPTY_TRY = "the text to try is empty: type a sentence to see where this feature fires on it"
CARDS = OwnedLRU(64)   # dashboards kept per index (a prompt change re-keys every panel; the card is the same)
TRIES = OwnedLRU(8)    # try-your-own runs kept per scope, by (text, layer)


# ------------------------------------------------------------------------------------------------ the card
def band_label(lo: float, hi: float) -> str:
    """``"25-50% of max"`` for the band [0.25, 0.5) of the maximum."""
    return f"{round(lo * 100)}-{round(hi * 100)}% of max"


def activation_bands(samples: Sequence[dict[str, Any]] | None, max_activation: float | None,
                     n_bands: int = N_BANDS, per_band: int = PER_BAND) -> list[dict[str, Any]]:
    """The sampled contexts grouped into ``n_bands`` equal-width bands of ``[0, max_activation]``, highest first.

    Each band: ``{"lo", "hi"}`` (fractions of the maximum), ``"label"`` (``"25-50% of max"``), ``"min"`` /
    ``"max"`` (activations), ``"count"`` (samples that fell in it) and ``"contexts"``: up to ``per_band`` of
    them, spread evenly over the band's samples (strongest, middle, weakest), so a band shows its range, not
    only its top. A sample at exactly the maximum belongs to the top band; one above it (a maximum from another
    pass) is clipped into it.
    """
    if n_bands < 1 or per_band < 0:
        raise QScopeError(f"n_bands must be >= 1 and per_band >= 0, got {n_bands}, {per_band}")
    m = float(max_activation or 0.0)
    if not samples or not (m > 0) or not math.isfinite(m):
        return []
    buckets: list[list[dict[str, Any]]] = [[] for _ in range(n_bands)]
    for s in samples:
        a = float(s.get("activation", 0.0))
        if not (a > 0) or not math.isfinite(a):
            continue
        buckets[min(n_bands - 1, int(a / m * n_bands))].append(s)
    bands = []
    for i in reversed(range(n_bands)):
        rows = sorted(buckets[i], key=lambda s: -float(s["activation"]))
        if per_band and len(rows) > per_band:
            idx = sorted({round(j * (len(rows) - 1) / max(1, per_band - 1)) for j in range(per_band)})
            picked = [rows[j] for j in idx]
        else:
            picked = rows[:per_band]
        lo, hi = i / n_bands, (i + 1) / n_bands
        bands.append({"lo": lo, "hi": hi, "label": band_label(lo, hi), "min": lo * m, "max": hi * m,
                      "count": len(rows), "contexts": [dict(s) for s in picked]})
    return bands


def _decoder_card(scope: Any, layer: int, feature: int) -> dict[str, Any]:
    from ..index.labels import decoder_logit_tokens
    from ..index.vocab import vocab_strings

    prom, supp = decoder_logit_tokens(scope, layer, vocab_strings(scope), n=10, features=[feature])
    return {"layer": layer, "feature": feature, "label": "", "explanation": "", "density": None, "count": 0,
            "mean_activation": None, "max_activation": None, "quantiles": {}, "hist": {"edges": [], "counts": []},
            "top_tokens": [], "promoted": prom[0], "suppressed": supp[0], "groups": {}, "contexts": [],
            "indexed": False}


def feature_data(scope: Any, layer: int, feature: int, *, url: str = "", n_bands: int = N_BANDS,
                 per_band: int = PER_BAND) -> dict[str, Any]:
    """The dashboard's dict: :meth:`FeatureIndex.feature` when an index covers ``layer``, else decoder facts.

    Adds ``"decoder_norm"``, ``"url"``, ``"indexed"``, ``"bands"`` (:func:`activation_bands` of the index's
    ``"samples"``) and ``"bands_note"`` (why there are no bands, ``""`` otherwise). The raw ``"samples"`` list is
    left out: the bands hold the ones shown, and a dashboard opened per click should send little. Cached per
    index and feature (a prompt change recomputes the explorer's panels; the card does not change with it).
    """
    sae = scope.sae(layer)  # names an unknown layer, or one without an SAE
    feature = sae.check_feature(feature)
    index = getattr(scope, "feature_index", None)
    indexed = index is not None and layer in index.layers
    owner = index if indexed else sae
    card = CARDS.get(owner, (layer, feature, n_bands, per_band),
                     lambda: _build(scope, index if indexed else None, sae, layer, feature, n_bands, per_band))
    data = dict(card)
    data["url"] = format_feature_url(url, layer, feature)  # http(s) only: the page opens it
    return data


def samples_in(index: Any) -> bool:
    """Whether the index sampled each feature's firings (``settings.sample_n > 0`` in its ``meta.json``; an index
    written before sampling has no ``sample_n``). An index object without ``meta`` is taken at its word."""
    meta = getattr(index, "meta", None)
    if not isinstance(meta, dict):
        return index is not None
    return int((meta.get("settings") or {}).get("sample_n", 0) or 0) > 0


def _build(scope: Any, index: Any, sae: Any, layer: int, feature: int, n_bands: int, per_band: int) -> dict:
    if index is not None:
        data = index.feature(layer, feature)
        data["indexed"] = True
    else:
        data = _decoder_card(scope, layer, feature)
    samples = data.pop("samples", None)
    if not samples and not samples_in(index):
        samples = None  # an index written before sampling: its cards say [] (or nothing)
    data["bands"] = activation_bands(samples, data.get("max_activation"), n_bands, per_band)
    if not data["indexed"]:
        data["bands_note"] = "no feature index covers this layer: no contexts"
    elif samples is None:
        data["bands_note"] = NO_SAMPLES_NOTE
    elif not data["bands"]:
        data["bands_note"] = "the index sampled no firings of this feature"
    else:
        data["bands_note"] = ""
    data["decoder_norm"] = float(sae.decoder_direction(feature).float().norm())
    return data


# ------------------------------------------------------------------------------------------------ try your own
def check_try_text(scope: Any, value: Any) -> str:
    """A try-your-own text must be a string (``""`` = nothing to try) of at most :data:`MAX_TRY_CHARS`."""
    if not isinstance(value, str):
        raise PromptError(f"the text to try must be a string, got {type(value).__name__} {value!r:.60}")
    if len(value) > MAX_TRY_CHARS:
        raise PromptError(f"the text to try has {len(value):,} characters, more than {MAX_TRY_CHARS:,}: "
                          "paste a shorter passage")
    return value


def try_text(scope: Any, layer: int, feature: int, text: str, cancel: Any = None) -> dict[str, Any]:
    """Run ``text`` through the scope at ``layer`` and report ``feature``'s activation on each token, as a
    context row: ``{"text", "layer", "feature", "tokens", "acts", "token_ids", "center" (where it peaks),
    "activation" (the max), "position", "error": ""}``. The forward goes through :meth:`Scope.run` (the scope's
    lock, the SAE bank's budget); the layer's codes are cached per text, so another feature on the same text
    costs no forward. An empty text or one over the context raises a :class:`PromptError` naming it."""
    check_try_text(scope, text)
    if not text.strip():
        raise PromptError(EMPTY_TRY)
    feature = scope.sae(layer).check_feature(feature)

    def run() -> tuple[list[str], list[int], Any]:
        try:
            trace = scope.run(text, layers=[layer], top_n=1, cancel=cancel)
        except PromptError as exc:
            raise PromptError(f"the text to try cannot run: {exc}") from exc
        return list(trace.tokens), [int(i) for i in trace.token_ids.tolist()], trace.layers[layer]

    tokens, ids, codes = TRIES.get(scope, (text, layer), run)
    acts = [float(a) for a in codes.activation_of(feature).float().tolist()]
    center = max(range(len(acts)), key=lambda i: acts[i]) if acts else 0
    return {"text": text, "layer": layer, "feature": feature, "tokens": tokens, "acts": acts, "token_ids": ids,
            "center": center, "position": center, "activation": acts[center] if acts else 0.0, "error": ""}


# ------------------------------------------------------------------------------------------------ contexts
def _int_list(value: Any, what: str) -> list[int]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                       for v in value):
        raise QScopeError(f"{what} must be a list of ints, got {value!r:.80}")
    return [int(v) for v in value]


def _decode(scope: Any, ids: list[int]) -> str:
    """Text of ``ids`` without special tokens (a BOS the tokenizer adds again when the text is run)."""
    return scope.tokenizer.decode(ids, skip_special_tokens=True)


def context_prompt(scope: Any, context: dict[str, Any]) -> tuple[str, int, str]:
    """A context row (top, sampled or try-your-own) as ``(prompt, token index in the prompt, note)``.

    The prompt is the context's ``token_ids`` decoded up to and including the window's last token; the index is
    the token of that prompt (as :meth:`Scope.tokenize` splits it) that ends where the activating token
    (``center``) ends, so a re-tokenization that merges differently still points at the right text. Without ids
    (an index built before they were stored) the readable ``tokens`` are joined and ``note`` says so.
    """
    if not isinstance(context, dict):
        raise QScopeError(f"a context must be a dict with 'tokens' and 'center', got {context!r:.80}")
    tokens = context.get("tokens")
    if not isinstance(tokens, (list, tuple)) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise QScopeError(f"a context needs a non-empty list of token strings, got {tokens!r:.80}")
    center = context.get("center")
    if not isinstance(center, int) or isinstance(center, bool) or not 0 <= center < len(tokens):
        raise QScopeError(f"the context's center {center!r} is not a token index in 0..{len(tokens) - 1}")
    ids = context.get("token_ids")
    note = ""
    if ids:
        ids = _int_list(ids, "token_ids")
        if len(ids) != len(tokens):
            raise QScopeError(f"the context has {len(tokens)} tokens but {len(ids)} token_ids")
        vocab = scope.model.get_input_embeddings().weight.shape[0]
        if min(ids) < 0 or max(ids) >= vocab:
            raise QScopeError(f"token_ids must be in 0..{vocab - 1}, got {min(ids)}..{max(ids)}")
        prompt, end = _decode(scope, ids), len(_decode(scope, ids[: center + 1]))
    else:
        prompt, end = "".join(tokens), len("".join(tokens[: center + 1]))
        note = "no token ids in this index: the text is the context's token strings joined"
    if not prompt.strip():
        raise PromptError("this context's text is empty after decoding: nothing to open")
    new_ids = [int(i) for i in scope.tokenize(prompt)[0].tolist()]  # over the context -> PromptError
    if ids and new_ids == ids:
        return prompt, center, note
    for j in range(len(new_ids)):
        if len(_decode(scope, new_ids[: j + 1])) >= end:
            return prompt, j, note
    return prompt, len(new_ids) - 1, note
