"""The explorer's snapshot: its state plus the outputs of every saved layer, token and feature.

The variants come from the live widget's own pipeline (:func:`~qscope_widgets.widgets.view_state.compute_view`)
run on the traces of one forward pass (and one steered pass when edits are active), so the static page shows
exactly the numbers the live explorer would show for the same choice, and the model runs once per export.

Families of variants (each output trait belongs to one, so any combination of choices is covered):

- ``{layer}``: tokens and the layer's top-k codes (what hover shows);
- ``{layer, selected_token}`` (every token and -1): sidebar rows and title, the layer chart;
- ``{layer, color_by}`` for ``strongest`` / ``error`` and ``{layer, color_by: "feature", selected_feature}``
  for every feature a sidebar lists (and -1): the heatmap's values and range;
- with steering active, ``{layer, selected_feature}``: steered minus baseline.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

from ..errors import QScopeError
from .snapshot import Snapshot, Variant, encode, synced_state

FAMILY_LAYER = ("tokens", "k", "codes_ids", "codes_values")
FAMILY_TOKEN = ("sidebar", "sidebar_title", "layer_chart")
FAMILY_COLOR = ("token_values", "value_range")
FAMILY_DIFF = ("diff_values",)
KERNEL_NOTES = {"prompt": "Running a new prompt", "edits": "Steering", "search_query": "Searching features",
                "continuation_tokens": "Generating a continuation"}


class RunMemo:
    """A Scope whose ``run`` answers from the traces computed once for the export (everything else delegates):
    the widget's pipeline is reused unchanged, without a forward pass per variant."""

    def __init__(self, scope: Any, baseline: Any, steered: Any):
        self._scope, self._baseline, self._steered = scope, baseline, steered

    def run(self, prompt: str, *, steering: Any = None, **_: Any) -> Any:
        return self._steered if steering else self._baseline

    def __getattr__(self, name: str) -> Any:
        return getattr(self._scope, name)


def _pick(outputs: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    return {n: encode(outputs[n]) for n in names}


def explorer_snapshot(widget: Any, layers: Sequence[int] | None = None, *, max_tokens: int = 256,
                      timeout: float | None = 120.0) -> Snapshot:
    """Snapshot of an :class:`~qscope_widgets.widgets.Explorer` (or one of its components).

    ``layers``: the SAE layers whose data the page keeps (the user switches between them without a kernel);
    default: the layer in view. Layers not yet run are run once here (one forward pass for all of them).
    """
    from ..widgets.explorer import INPUTS
    from ..widgets.view_state import (TOP_NEXT, BaselineCache, FeatureInfo, build_request, compute_view,
                                      edits_from_dicts)

    widget.wait(timeout)  # raises the shown error: there is nothing consistent to save then
    scope = widget.scope
    if not widget.prompt.strip():
        raise QScopeError("the explorer has no prompt yet: set explorer.prompt before saving it as HTML")
    chosen = [widget.layer] if layers is None else list(dict.fromkeys(layers))
    if not chosen:
        raise QScopeError("layers=[] saves nothing: pass at least one SAE layer, e.g. layers=[explorer.layer]")
    for n in chosen:
        scope.check_layer(n)
        if n not in scope.sae_layers:
            raise QScopeError(f"layer {n!r} has no SAE, so the explorer cannot show it; SAE layers: {scope.sae_layers}")
    if widget.layer not in chosen:
        chosen.insert(0, widget.layer)
    if len(widget.tokens) > max_tokens:
        raise QScopeError(f"the prompt has {len(widget.tokens)} tokens, more than max_tokens={max_tokens}: "
                          "pass a larger max_tokens= (the page grows with tokens x layers) or shorten the prompt")

    req0 = build_request(scope, {name: getattr(widget, name) for name in INPUTS})
    run_layers = sorted(set(req0.run_layers) | set(chosen))
    edits = [e for e in edits_from_dicts(widget.edits) if not e.is_noop]
    baseline = scope.run(widget.prompt, layers=run_layers, top_n=TOP_NEXT)
    steered = scope.run(widget.prompt, layers=run_layers, steering=edits, top_n=TOP_NEXT) if edits else baseline
    memo, cache, info = RunMemo(scope, baseline, steered), BaselineCache(), FeatureInfo(scope)
    preload_contexts(info.index, chosen)
    base_req = replace(req0, chart_layers=tuple(run_layers), diff=False, continuation_tokens=0)

    def view(**changes: Any) -> dict[str, Any]:
        return compute_view(memo, replace(base_req, **changes), cache, info).outputs

    n_tok = len(baseline)
    variants: list[Variant] = []
    for layer in chosen:
        variants.append(Variant({"layer": layer}, _pick(view(layer=layer, selected_token=0, selected_feature=-1),
                                                       FAMILY_LAYER)))
        clickable: dict[int, None] = {}
        for t in range(-1, n_tok):
            out = view(layer=layer, selected_token=t, selected_feature=-1)
            variants.append(Variant({"layer": layer, "selected_token": t}, _pick(out, FAMILY_TOKEN)))
            clickable.update((int(r["feature"]), None) for r in out["sidebar"])
        if layer == widget.layer and widget.selected_feature >= 0:
            clickable[int(widget.selected_feature)] = None
        for color in ("strongest", "error"):
            out = view(layer=layer, selected_token=0, selected_feature=-1, color_by=color)
            variants.append(Variant({"layer": layer, "color_by": color}, _pick(out, FAMILY_COLOR)))
        for f in [-1, *clickable]:
            out = view(layer=layer, selected_token=0, selected_feature=f, color_by="feature")
            variants.append(Variant({"layer": layer, "color_by": "feature", "selected_feature": f},
                                    _pick(out, FAMILY_COLOR)))
            if edits:
                variants.append(Variant({"layer": layer, "selected_feature": f}, _pick(out, FAMILY_DIFF)))

    state = synced_state(widget)
    state["status"] = {"busy": False, "stage": "saved snapshot", "latency_ms": 0.0, "error": "",
                       "seq": widget.result_seq}
    names = ", ".join(f"L{n}" for n in chosen)
    return Snapshot(
        state=state, title=f"qscope explorer · {scope_name(scope)} · L{widget.layer}", variants=tuple(variants),
        local=("diff",), resets={"layer": {"selected_feature": -1}}, seq=("request_seq", "result_seq"),
        note=("Saved snapshot, no kernel. Hover the tokens, select a "
              f"token or a feature, switch between the saved layers ({names}). A new prompt, steering, search and "
              "other layers need a live kernel."),
        kernel_notes=dict(KERNEL_NOTES))


PRELOAD_CONTEXTS_BYTES = 64 * 2**20


def preload_contexts(index: Any, layers: Sequence[int]) -> None:
    """Read each saved layer's context table once (a few MB for the demo) instead of once per feature: the
    sidebars of every token list ~100 features per layer, each with two context previews."""
    if index is None:
        return
    for n in layers:
        path = getattr(index, "path", None)
        table = path / f"layer{n}" / "contexts.parquet" if path is not None else None
        if n in getattr(index, "layers", ()) and table is not None and table.exists() \
                and table.stat().st_size <= PRELOAD_CONTEXTS_BYTES:
            index.contexts(n)


def scope_name(scope: Any) -> str:
    return str(getattr(scope, "name", "") or type(getattr(scope, "model", scope)).__name__)
