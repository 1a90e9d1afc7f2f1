"""Does steering a feature do what its label says, more than steering *anything* that hard would? Measure it.

    df = scope.steering_eval(["It is a", "I think that"], SteeringEdit(3, 2360, 1.0),
                             strengths=[8, 16, 32], metrics=[WordRate(BIBLE_WORDS), FeatureActivation()],
                             seeds=[0, 1, 2])
    df.summary()          # per edit x strength x metric: effect, margin over each control, spread, "specific"
    df.plot_effect("word_rate")

A steering effect on its own proves little: pushing the residual stream ``strength`` units in *any* direction
changes the text, often in the same coarse ways (repetition, a shift of register). So every steered continuation
is generated beside the same prompt's

* ``baseline``: no steering;
* ``random_direction``: a random unit direction (seeded) scaled to ``||strength * W_dec[:, f]||``, added exactly
  where the edit adds (same layer, same positions);
* ``other_feature``: another live feature of similar density (from the attached index), scaled to the same norm.

``clamp`` and ``ablate`` edits move the residual by a different amount at each position (``(strength - z_f) d``,
``-strength z_f d``), so their controls are matched position by position (:func:`matched_direction`): at every
position the edit touches, the control adds its own unit direction times the norm of the edit's displacement
there (the other feature's with the displacement's sign), so each control moves the residual exactly as far as
the edit does, where it does.

Rows are tidy (one per prompt x strength x condition x seed). Effect metrics are the caller's choice (any
callable of a :class:`Continuation`); the fluency cost is always measured: the continuation's perplexity under
the *unsteered* model and its distinct-2 (unique bigrams / bigrams). :meth:`SteeringEvalFrame.summary` calls an
effect *specific* only when the feature beats baseline and every control by more than twice the standard error of
the paired difference over prompts (seeds averaged within each prompt: prompts are the independent units).
"""

from __future__ import annotations

import math
import numbers
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import pandas as pd
import torch
from torch import Tensor

from .errors import QScopeError, SteeringError
from .hooks import apply_edits, patch_residual, resolve_edits
from .steering import SteeringEdit, as_edits

if TYPE_CHECKING:
    from .scope import Scope

CONDITIONS = ("baseline", "feature", "random_direction", "other_feature")
CONTROLS = ("random_direction", "other_feature")


# ---------------------------------------------------------------------------------------------- one continuation
@dataclass
class Continuation:
    """One generated continuation, as a metric sees it. Log-probabilities are computed on first use, once."""

    scope: "Scope"
    prompt: str
    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    edit: SteeringEdit  # the evaluated edit at this row's strength (also for control rows)
    condition: str
    intervention: Callable[[], Any] = field(repr=False, default=nullcontext)  # re-applies this row's steering
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def ids(self) -> Tensor:
        return torch.tensor([self.prompt_ids + self.token_ids], dtype=torch.long)

    def log_probs(self, steered: bool) -> Tensor:
        """``(n_new, vocab)`` log-probabilities of each generated position's next token, under this row's
        intervention (``steered=True``) or the plain model."""
        key = ("lp", steered)
        if key not in self._cache:
            ids = self.ids.to(self.scope.device)
            with (self.intervention() if steered else nullcontext()), torch.inference_mode():
                logits = self.scope.model(input_ids=ids, use_cache=False).logits[0].float()
            p = len(self.prompt_ids)
            self._cache[key] = logits[p - 1:p - 1 + len(self.token_ids)].log_softmax(-1).cpu()
        return self._cache[key]

    def codes(self, layer: int):
        """Unsteered SAE codes of ``layer`` on prompt + continuation (a fresh run of the generated text)."""
        key = ("codes", layer)
        if key not in self._cache:
            self._cache[key] = self.scope.run(self.prompt_ids + self.token_ids, layers=[layer]).layers[layer]
        return self._cache[key]


# ---------------------------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class WordRate:
    """Share of the continuation's words (lower-cased, punctuation stripped) that are in ``words``."""

    words: frozenset
    name: str = "word_rate"
    higher_is_better: bool = True

    def __init__(self, words: Iterable[str], name: str = "word_rate", higher_is_better: bool = True):
        if isinstance(words, str):
            raise QScopeError(f"WordRate needs a collection of words, got the string {words!r}")
        ws = frozenset(str(w).lower() for w in words)
        if not ws:
            raise QScopeError("WordRate needs at least one word")
        object.__setattr__(self, "words", ws)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "higher_is_better", higher_is_better)

    def __call__(self, c: Continuation) -> float:
        words = [w.strip(".,;:!?'\"()[]{}").lower() for w in c.text.split()]
        words = [w for w in words if w]
        return sum(w in self.words for w in words) / len(words) if words else 0.0


@dataclass(frozen=True)
class TargetLogProb:
    """Mean over generated positions of ``log sum_{t in targets} p(t)`` under this row's steering: how much the
    intervention pushes probability toward the target tokens (strings are tokenized; each must be one token)."""

    targets: tuple
    name: str = "target_logprob"
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.targets, (str, int)) or not len(tuple(self.targets)):
            raise QScopeError(f"TargetLogProb needs a non-empty list of tokens, got {self.targets!r}")
        object.__setattr__(self, "targets", tuple(self.targets))

    def token_ids(self, tokenizer: Any) -> list[int]:
        out = []
        for t in self.targets:
            if isinstance(t, numbers.Integral) and not isinstance(t, bool):
                out.append(int(t))
                continue
            ids = tokenizer(str(t), add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise QScopeError(f"target {t!r} is {len(ids)} tokens, not one; pass token ids or single tokens")
            out.append(int(ids[0]))
        return out

    def __call__(self, c: Continuation) -> float:
        if not c.token_ids:
            return float("nan")
        ids = self.token_ids(c.scope.tokenizer)
        vocab = c.log_probs(True).shape[-1]
        bad = [i for i in ids if not 0 <= i < vocab]
        if bad:
            raise QScopeError(f"target token ids {bad} are outside the vocabulary 0..{vocab - 1}")
        return float(c.log_probs(True)[:, ids].logsumexp(-1).mean())


@dataclass(frozen=True)
class FeatureActivation:
    """Mean activation of a feature (default: the steered one) over the continuation's tokens, read from an
    *unsteered* re-run of prompt + continuation: does the text itself now carry the feature?"""

    layer: int | None = None
    feature: int | None = None
    name: str = "feature_act"
    higher_is_better: bool = True

    def __call__(self, c: Continuation) -> float:
        if not c.token_ids:
            return float("nan")
        layer = c.edit.layer if self.layer is None else self.layer
        feature = c.edit.feature if self.feature is None else self.feature
        act = c.codes(layer).activation_of(feature)
        return float(act[len(c.prompt_ids):].mean())


def perplexity(c: Continuation) -> float:
    """Perplexity of the continuation under the unsteered model (the fluency cost; lower is more fluent)."""
    if not c.token_ids:
        return float("nan")
    lp = c.log_probs(False)
    nll = -lp[torch.arange(len(c.token_ids)), torch.tensor(c.token_ids)].mean()
    return float(nll.exp())


def distinct2(c: Continuation) -> float:
    """Unique token bigrams / bigrams of the continuation (1: no repetition; low: "which which which")."""
    toks = c.token_ids
    if len(toks) < 2:
        return float("nan")
    pairs = list(zip(toks, toks[1:]))
    return len(set(pairs)) / len(pairs)


def _metric_table(metrics: Any) -> dict[str, tuple[Callable[[Continuation], float], bool]]:
    if metrics is None:
        metrics = [FeatureActivation()]
    if callable(metrics) and not isinstance(metrics, (list, tuple, dict)):
        metrics = [metrics]
    items = list(metrics.items()) if isinstance(metrics, dict) else [(None, m) for m in metrics]
    out: dict[str, tuple[Callable, bool]] = {}
    for name, m in items:
        if not callable(m):
            raise QScopeError(f"a metric must be callable (a Continuation -> float), got {m!r}")
        name = name or getattr(m, "name", None) or getattr(m, "__name__", None) or type(m).__name__
        if name in out or name in ("perplexity", "distinct2"):
            raise QScopeError(f"two metrics are named {name!r}; pass a dict {{name: metric}} to name them")
        out[str(name)] = (m, bool(getattr(m, "higher_is_better", True)))
    return out


# ---------------------------------------------------------------------------------------------- interventions
@contextmanager
def add_direction(scope: "Scope", layer: int, vector: Tensor, *, positions: Any = None,
                  prompt_len: int) -> Iterator[None]:
    """Add ``vector`` to layer ``layer``'s output (``resid_post``) for the block: an ``add`` steering edit along an
    arbitrary direction, at the same positions an edit's ``positions`` would touch (``None``: every token,
    ``"generated"``: positions >= ``prompt_len``, or absolute/negative-from-prompt-end ints). Works across
    KV-cached generation steps by counting the tokens each forward call feeds. Take ``scope.steering(None)`` (the
    scope's lock) around it when other threads use the model."""
    scope.check_layer(layer)
    v = torch.as_tensor(vector).detach().float().reshape(-1)
    if v.numel() != scope.d_model or not bool(torch.isfinite(v).all()):
        raise SteeringError(f"direction must be {scope.d_model} finite numbers, got shape {tuple(v.shape)}")
    absolute = None
    if isinstance(positions, tuple):
        absolute = torch.tensor(sorted({p + prompt_len if p < 0 else p for p in positions}), dtype=torch.long)
    state = {"offset": 0}

    def fn(h: Tensor) -> Tensor:
        pos = torch.arange(state["offset"], state["offset"] + h.shape[1], device=h.device)
        state["offset"] += h.shape[1]
        delta = v.to(h.device, h.dtype)
        if positions is None:
            return h + delta
        mask = pos >= prompt_len if positions == "generated" else torch.isin(pos, absolute.to(h.device))
        return h + mask[None, :, None].to(h.dtype) * delta

    with patch_residual(scope.layers, layer, fn):
        yield


@contextmanager
def matched_direction(scope: "Scope", edit: SteeringEdit, unit: Tensor, *, prompt_len: int,
                      signed: bool = False) -> Iterator[None]:
    """Add ``unit`` scaled, at every position, to the norm of the displacement ``edit`` would make there (any
    mode; its layer and positions): a control for ``clamp`` / ``ablate`` edits, whose displacement depends on the
    feature's code at each position. ``signed``: follow the sign of the edit's coefficient along its own decoder
    direction (the other-feature control pushes its feature up where the edit pushes the feature up). The edit
    itself is not applied. Take ``scope.steering(None)`` (the scope's lock) around it when other threads use the
    model."""
    scope.check_layer(edit.layer)
    u = torch.as_tensor(unit).detach().float().reshape(-1)
    if u.numel() != scope.d_model or not bool(torch.isfinite(u).all()) or float(u.norm()) == 0.0:
        raise SteeringError(f"direction must be {scope.d_model} finite numbers, not all zero")
    u = u / u.norm()
    resolved = resolve_edits([edit], scope.saes, len(scope.layers), prompt_len, scope.max_context)
    state = {"offset": 0}

    def fn(h: Tensor) -> Tensor:
        pos = torch.arange(state["offset"], state["offset"] + h.shape[1], device=h.device)
        state["offset"] += h.shape[1]
        if not resolved:
            return h
        r = resolved[edit.layer]
        delta = (apply_edits(h.float(), r, pos, prompt_len) - h.float())  # (b, seq, d_model)
        norm = delta.norm(dim=-1, keepdim=True)
        if signed:
            d = r[0].direction(delta)
            norm = norm * torch.sign(delta @ d)[..., None]
        return h + (norm * u.to(h.device)).to(h.dtype)

    with patch_residual(scope.layers, edit.layer, fn):
        yield


def random_direction(d_model: int, norm: float, seed: int) -> Tensor:
    """A direction drawn uniformly from the sphere (seeded), scaled to ``norm``."""
    g = torch.Generator().manual_seed(int(seed))
    v = torch.randn(d_model, generator=g)
    return v / v.norm() * norm


def similar_density_features(scope: "Scope", layer: int, feature: int, n: int = 8,
                             max_cosine: float = 0.3) -> list[int]:
    """Live features of ``layer`` whose density (from the attached index) is closest to ``feature``'s, in log
    space, excluding ``feature`` and features whose decoder direction is close to it (|cosine| > ``max_cosine``)."""
    idx = getattr(scope, "feature_index", None)
    if idx is None or layer not in idx.layers:
        raise QScopeError(f"the 'other_feature' control needs a feature index covering layer {layer} (for "
                          "densities): load or build one, pass other_features={feature: [ids]}, or drop the control")
    feats = idx.features(layer)
    dens = torch.tensor(feats["density"].to_numpy(), dtype=torch.float64)
    alive = dens > 0
    if not bool(alive[feature]):
        raise QScopeError(f"feature {feature} of layer {layer} never fired on the index's corpus: no density to match")
    W = scope.sae(layer).W_dec.detach().float()  # (d_model, d_sae)
    Wn = W / W.norm(dim=0, keepdim=True).clamp_min(1e-12)
    cos = (Wn[:, feature] @ Wn).abs().cpu()
    ok = alive & (cos <= max_cosine)
    ok[feature] = False
    cand = torch.nonzero(ok).flatten()
    if len(cand) == 0:
        raise QScopeError(f"no live feature of layer {layer} is far enough from feature {feature} to be a control")
    gap = (dens[cand].log() - math.log(float(dens[feature]))).abs()
    return cand[gap.argsort()[:n]].tolist()


# ---------------------------------------------------------------------------------------------- the evaluation
def _check_list(name: str, values: Any, kind: type | tuple) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        values = [values]
    values = list(values)
    if not values:
        raise QScopeError(f"{name} is empty")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, kind):
            raise QScopeError(f"{name} must hold {getattr(kind, '__name__', kind)}s, got {v!r}")
    return values


def steering_eval(scope: "Scope", prompts: Any, edits: Any, *, strengths: Any = None, metrics: Any = None,
                  controls: Sequence[str] = CONTROLS, max_new_tokens: int = 24, seeds: Any = (0,),
                  temperature: float = 0.0, top_p: float = 1.0, other_features: dict | None = None,
                  progress: Callable[[int, int], Any] | None = None) -> "SteeringEvalFrame":
    """Steer each ``add`` edit at each strength on each prompt, beside its controls; one row per prompt x edit x
    strength x condition x seed. See the module docstring.

    Args:
        prompts: a prompt or a list of prompts (text).
        edits: ``SteeringEdit``(s); their ``layer``, ``feature``, ``mode`` and ``positions`` are used. The
            controls of ``clamp`` / ``ablate`` edits are matched position by position (module docstring).
        strengths: strengths to sweep (default: each edit's own strength): multiples of ``W_dec[:, f]`` for
            ``add``, target codes for ``clamp``, fractions removed for ``ablate``.
        metrics: effect metrics: callables ``Continuation -> float`` (``WordRate``, ``TargetLogProb``,
            ``FeatureActivation``, your own), a list or a ``{name: metric}`` dict; default ``[FeatureActivation()]``.
        controls: any of ``"random_direction"``, ``"other_feature"``.
        seeds: each seed draws a fresh random direction and control feature (and the sampling, if
            ``temperature > 0``).
        other_features: ``{feature: [candidate control ids]}`` to override the index's density match.
    """
    prompts = _check_list("prompts", prompts, str)
    if any(not p for p in prompts):
        raise QScopeError("a prompt is empty")
    edit_list = as_edits(edits)
    if not edit_list:
        raise SteeringError("steering_eval needs at least one SteeringEdit")
    for e in edit_list:
        scope.check_layer(e.layer)
        scope.sae(e.layer).check_feature(e.feature)
    strength_list = None if strengths is None else [float(s) for s in _check_list("strengths", strengths, numbers.Real)]
    if strength_list is not None and not all(math.isfinite(s) for s in strength_list):
        raise SteeringError(f"strengths must be finite, got {strengths!r}")
    seed_list = [int(s) for s in _check_list("seeds", seeds, numbers.Integral)]
    if isinstance(controls, str):
        controls = (controls,)
    bad = [c for c in controls if c not in CONTROLS]
    if bad:
        raise QScopeError(f"unknown control(s) {bad}; choose from {list(CONTROLS)}")
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 2:
        raise QScopeError(f"max_new_tokens must be an int >= 2 (distinct-2 needs two tokens), got {max_new_tokens!r}")
    table = _metric_table(metrics)
    conditions = ["baseline", "feature", *[c for c in CONTROLS if c in controls]]
    control_pool = {}
    if "other_feature" in controls:
        for e in edit_list:
            given = (other_features or {}).get(e.feature)
            control_pool[(e.layer, e.feature)] = (list(given) if given else
                                                  similar_density_features(scope, e.layer, e.feature))
            for g in control_pool[(e.layer, e.feature)]:
                scope.sae(e.layer).check_feature(g)

    deterministic = temperature == 0.0
    gen_cache: dict = {}
    rows = []
    total = len(prompts) * len(edit_list) * len(strength_list or [0]) * len(conditions) * len(seed_list)
    done = 0
    for prompt in prompts:
        prompt_ids = scope.tokenize(prompt)[0].tolist()
        plen = len(prompt_ids)
        for edit in edit_list:
            sae = scope.sae(edit.layer)
            d_norm = float(sae.decoder_direction(edit.feature).float().norm())
            for s in (strength_list or [edit.strength]):
                e_s = edit.with_strength(s)
                added = edit.mode == "add"  # else the displacement, and so the controls' norm, varies by position
                norm = abs(s) * d_norm if added else float("nan")
                for cond in conditions:
                    for seed in seed_list:
                        control = None
                        if cond == "baseline":
                            steer, interv = None, nullcontext
                        elif cond == "feature":
                            steer = e_s
                            interv = _edit_intervention(scope, e_s, plen)
                        elif cond == "other_feature":
                            pool = control_pool[(edit.layer, edit.feature)]
                            control = int(pool[seed % len(pool)])  # seeds walk the density-matched pool
                            if added:
                                g_norm = float(sae.decoder_direction(control).float().norm())
                                steer = replace(e_s, feature=control, strength=math.copysign(norm / g_norm, s))
                                interv = _edit_intervention(scope, steer, plen)
                            else:
                                steer = None
                                interv = (lambda g=sae.decoder_direction(control), e_s=e_s: matched_direction(
                                    scope, e_s, g, prompt_len=plen, signed=True))
                        elif added:
                            vec = random_direction(scope.d_model, norm, seed)
                            steer = None
                            interv = (lambda vec=vec: add_direction(scope, edit.layer, vec, positions=edit.positions,
                                                                    prompt_len=plen))
                        else:
                            steer = None
                            interv = (lambda vec=random_direction(scope.d_model, 1.0, seed), e_s=e_s:
                                      matched_direction(scope, e_s, vec, prompt_len=plen))
                        key = (prompt, edit.layer, edit.feature, s, cond, control,
                               None if (deterministic and cond in ("baseline", "feature")) else seed)
                        if cond == "baseline":
                            key = (prompt, "baseline", edit.layer, edit.feature, None if deterministic else seed)
                        if key not in gen_cache:  # identical runs (greedy baseline / feature rows) measured once
                            toks = _generate(scope, prompt, steer, interv if steer is None and cond != "baseline"
                                             else None,
                                             max_new_tokens, seed, temperature, top_p)
                            c = Continuation(scope, prompt, prompt_ids, toks,
                                             scope.tokenizer.decode(toks, skip_special_tokens=True), e_s, cond, interv)
                            measured = {"text": c.text, "n_tokens": len(toks)}
                            for name, (fn, _) in table.items():
                                measured[name] = float(fn(c))
                            measured["perplexity"] = perplexity(c)
                            measured["distinct2"] = distinct2(c)
                            gen_cache[key] = measured
                        row = {"prompt": prompt, "layer": edit.layer, "feature": edit.feature, "strength": s,
                               "condition": cond, "seed": seed, "control_feature": control,
                               "mode": edit.mode, "positions": edit.positions,
                               "direction_norm": 0.0 if cond == "baseline" else norm, **gen_cache[key]}
                        rows.append(row)
                        done += 1
                        if progress is not None:
                            progress(done, total)
    df = SteeringEvalFrame(rows)
    df.attrs["metrics"] = {name: hib for name, (_, hib) in table.items()}
    df.attrs["controls"] = [c for c in conditions if c in CONTROLS]
    return df


def _edit_intervention(scope: "Scope", edit: SteeringEdit, prompt_len: int) -> Callable[[], Any]:
    return lambda: scope.steering(edit, prompt_len=prompt_len, max_len=scope.max_context)


def _generate(scope: "Scope", prompt: str, steer: SteeringEdit | None, interv: Callable[[], Any] | None,
              max_new_tokens: int, seed: int, temperature: float, top_p: float) -> list[int]:
    if interv is None:
        g = scope.generate(prompt, steer, max_new_tokens=max_new_tokens, seed=seed, temperature=temperature,
                           top_p=top_p, baseline=False)
        return list(g.token_ids)
    with scope.steering(None), interv():  # the scope's lock, then the arbitrary-direction hook
        g = scope.generate(prompt, None, max_new_tokens=max_new_tokens, seed=seed, temperature=temperature,
                           top_p=top_p, baseline=False)
    return list(g.token_ids)


# ---------------------------------------------------------------------------------------------- the result
class SteeringEvalFrame(pd.DataFrame):
    """The tidy rows of :func:`steering_eval` (a ``pandas.DataFrame``) plus :meth:`summary` and
    :meth:`plot_effect`. ``attrs["metrics"]`` maps each effect metric to whether higher means more effect."""

    @property
    def _constructor(self):
        return SteeringEvalFrame

    def to_dataframe(self) -> pd.DataFrame:
        return pd.DataFrame(self)

    def summary(self, z: float = 2.0) -> pd.DataFrame:
        """One row per edit x strength x metric: the feature's effect over baseline and its margin over each
        control: the paired difference (feature - reference, sign-flipped for lower-is-better metrics) averaged
        over seeds within each prompt, then its mean (``margin_vs_X``) and standard deviation (``sd_vs_X``) over
        prompts, the independent units; ``wins_vs_X`` is the share of (prompt, seed) pairs where the feature wins.
        ``specific``: the margin over baseline and over every control exceeds ``z`` standard errors (sd / sqrt
        of the number of prompts).
        Fluency cost columns: mean perplexity and distinct-2 of the feature's continuations and of baseline's."""
        metrics: dict = self.attrs.get("metrics", {})
        controls = self.attrs.get("controls", [c for c in CONTROLS if c in set(self["condition"])])
        out = []
        unit = ["prompt", "seed"]
        for (layer, feature, s), grp in pd.DataFrame(self).groupby(["layer", "feature", "strength"], sort=True):
            by = {c: g.set_index(unit) for c, g in grp.groupby("condition")}
            feat = by.get("feature")
            if feat is None:
                continue
            for m, hib in metrics.items():
                sign = 1.0 if hib else -1.0
                row = {"layer": layer, "feature": feature, "strength": s, "metric": m,
                       "feature_mean": float(feat[m].mean())}
                ok = True
                for ref in ["baseline", *controls]:
                    if ref not in by:
                        continue
                    diff = sign * (feat[m] - by[ref][m].reindex(feat.index)).dropna()
                    # prompts are the independent units (seeds are nested in them, and greedy decoding repeats
                    # the same feature continuation for every seed): average over seeds, then spread over prompts
                    per_prompt = diff.groupby(level="prompt").mean()
                    n = len(per_prompt)
                    mean = float(per_prompt.mean()) if n else float("nan")
                    sd = float(per_prompt.std(ddof=1)) if n > 1 else float("nan")
                    se = sd / math.sqrt(n) if n > 1 else float("nan")
                    row[f"{ref}_mean"] = float(by[ref][m].mean())
                    row[f"margin_vs_{ref}"] = mean
                    row[f"sd_vs_{ref}"] = sd
                    row[f"wins_vs_{ref}"] = float((diff > 0).mean()) if len(diff) else float("nan")
                    beats = n > 1 and mean > 0 and (mean - z * se > 0 if se > 0 else mean > 0)
                    ok = ok and beats
                row["n_prompts"] = int(feat.index.get_level_values("prompt").nunique())
                row["n_units"] = len(feat)
                row["specific"] = bool(ok)
                row["perplexity_feature"] = float(feat["perplexity"].mean())
                row["perplexity_baseline"] = float(by["baseline"]["perplexity"].mean()) if "baseline" in by else None
                row["distinct2_feature"] = float(feat["distinct2"].mean())
                row["distinct2_baseline"] = float(by["baseline"]["distinct2"].mean()) if "baseline" in by else None
                out.append(row)
        return pd.DataFrame(out)

    def plot_effect(self, metric: str | None = None, ax: Any = None):
        """Mean ``metric`` (default: the first effect metric) against strength, one line per condition, with
        error bars of one standard deviation over (prompt, seed) units; returns the matplotlib axes."""
        metrics = list(self.attrs.get("metrics", {})) + ["perplexity", "distinct2"]
        metric = metric or metrics[0]
        if metric not in self.columns:
            raise QScopeError(f"no metric {metric!r}; measured: {metrics}")
        try:
            import matplotlib.pyplot as plt
        except ImportError:  # pragma: no cover - matplotlib is in the notebooks extra
            raise QScopeError("plot_effect needs matplotlib: pip install 'qscope-widgets[notebooks]'") from None
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.2))
        df = pd.DataFrame(self)
        for (layer, feature), grp in df.groupby(["layer", "feature"]):
            for cond, g in grp.groupby("condition", sort=False):
                st = g.groupby("strength")[metric].agg(["mean", "std"]).fillna(0.0)
                ax.errorbar(st.index, st["mean"], yerr=st["std"], marker="o", capsize=3,
                            label=f"L{layer}/{feature} {cond}" if df.groupby(["layer", "feature"]).ngroups > 1
                            else cond)
        ax.set_xlabel("strength")
        ax.set_ylabel(metric)
        ax.legend(fontsize=8)
        return ax
