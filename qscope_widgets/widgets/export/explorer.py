"""The snapshot of a panel view (the explorer and its components): its state plus every saved choice's outputs.

Generic over panels (``widgets/panels.py``): each panel is a pure function of the cached traces and the view
inputs it ``depends`` on, so the export runs the model once (the saved layers in one forward, plus one steered
pass when edits are active) and calls each panel for every saved value of its inputs: each saved layer, every
token and none, every feature a sidebar lists and none, each colour-by, diff on and off. The page therefore
shows exactly what the live view shows for the same choice.

Then, per output trait, the smallest set of inputs it actually varies with over those calls is found (the token
codes vary with the layer only, the sidebar with layer and token, ...), and the trait is saved once per value of
that set: a variant keyed by those inputs (``js/src/static-host.js`` overlays the matching ones). A panel whose
inputs would need more than ``MAX_CALLS`` calls per layer drops its largest input (held at "none"; the layer
chart's token x feature grid is the one that does); what was dropped is listed in the page's note.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import replace
from typing import Any, Sequence

from ...errors import QScopeError
from .snapshot import Snapshot, Variant, encode, synced_state

# ViewInputs fields that are also input traits of the same name: the choices a static page can offer
CHOICES = ("layer", "selected_token", "selected_feature", "color_by", "diff")
NONE_VALUE = {"selected_token": -1, "selected_feature": -1}
MAX_CALLS = 5_000  # panel calls per panel and saved layer; beyond it the largest choice is held at "none"
KERNEL_NOTES = {"prompt": "Running a new prompt", "edits": "Steering", "search_query": "Searching features",
                "continuation_tokens": "Generating a continuation", "steer_positions": "Changing steered positions",
                "temperature": "Sampling", "seed": "Sampling", "stop_at_eos": "Generating a continuation"}
PRELOAD_CONTEXTS_BYTES = 64 * 2**20
KERNEL_NOTES["dashboard_text"] = "Trying your own text"
# Panels a page keeps only for the choice shown when it was saved (the dashboard: one card per listed feature
# would double the page); for other choices their outputs are empty, and the panel says it needs a kernel.
SAVED_AS_SHOWN = ("dashboard",)


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


def _listed_features(outputs: dict[str, Any]) -> set[int]:
    """Feature ids a user can click in these outputs: any list of rows with a "feature" key (sidebar rows)."""
    out: set[int] = set()
    for value in outputs.values():
        if isinstance(value, list):
            out.update(int(r["feature"]) for r in value if isinstance(r, dict) and isinstance(r.get("feature"), int))
    return out


class _Store:
    """Encoded trait values by content hash: the same value (a layer's codes, seen thousands of times) is
    encoded and kept once."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def put(self, value: Any) -> str:
        enc = encode(value)
        text = json.dumps(enc, sort_keys=True, separators=(",", ":"))
        h = hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
        self.values.setdefault(h, enc)
        return h


def _minimal_key(rows: list[tuple[dict[str, Any], str]], fields: list[str],
                 sizes: dict[str, int]) -> list[str]:
    """The smallest subset of ``fields`` the value is a function of, over these (choices, value-hash) rows."""
    subsets = sorted((c for r in range(len(fields) + 1) for c in itertools.combinations(fields, r)),
                     key=lambda c: (len(c), _product(sizes[f] for f in c)))
    for subset in subsets:
        seen: dict[tuple, str] = {}
        if all(seen.setdefault(tuple(ch[f] for f in subset), h) == h for ch, h in rows):
            return list(subset)
    return list(fields)


def _product(xs: Any) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


def explorer_snapshot(widget: Any, layers: Sequence[int] | None = None, *, max_tokens: int = 256,
                      timeout: float | None = 120.0) -> Snapshot:
    """Snapshot of a panel view (:class:`~qscope_widgets.widgets.Explorer` or a component).

    ``layers``: the SAE layers whose data the page keeps (the user switches between them without a kernel);
    default: the layer in view. They run once here, in one forward pass.
    """
    from ..constants import COLOR_BY
    from ..features import FeatureInfo
    from ..panels import INPUT_TRAITS, PanelInput, get_panels, layers_needed
    from ..view_state import TraceCache, build_request

    widget.wait(timeout)  # raises the shown error: there is nothing consistent to save then
    scope = widget.scope
    if not widget.prompt.strip():
        raise QScopeError("the view has no prompt yet: set its prompt before saving it as HTML")
    chosen = [widget.layer] if layers is None else list(dict.fromkeys(layers))
    if not chosen:
        raise QScopeError("layers=[] saves nothing: pass at least one SAE layer, e.g. layers=[explorer.layer]")
    for n in chosen:
        scope.check_layer(n)
        if n not in scope.sae_layers:
            raise QScopeError(f"layer {n!r} has no SAE, so the view cannot show it; SAE layers: {scope.sae_layers}")
    if widget.layer not in chosen:
        chosen.insert(0, widget.layer)
    panels = get_panels(widget.panels)
    inputs = {n: getattr(widget, n) for n in INPUT_TRAITS if widget.has_trait(n)}
    req = build_request(scope, inputs, layers_needed(panels))
    run_layers = tuple(sorted(set(req.traces.layers) | set(chosen)))
    traces = TraceCache().get(scope, replace(req.traces, layers=run_layers))
    n_tok = len(traces.trace)
    if n_tok > max_tokens:
        raise QScopeError(f"the prompt has {n_tok} tokens, more than max_tokens={max_tokens}: pass a larger "
                          "max_tokens= (the page grows with tokens x layers) or shorten the prompt")
    info = FeatureInfo(scope)
    preload_contexts(info.index, chosen)
    view0 = req.view
    steered = bool(traces.request.edits)
    offered = [f for f in CHOICES if widget.has_trait(f)]
    domains: dict[str, list[Any]] = {
        "layer": chosen, "selected_token": list(range(-1, n_tok)), "color_by": [c for c in COLOR_BY if c != "monitor" or inputs.get("monitor")],
        "diff": [False, True] if steered else [view0.diff]}
    features: dict[int, set[int]] = {n: {-1} for n in chosen}
    if view0.selected_feature >= 0:
        features[view0.layer].add(view0.selected_feature)

    def call(p: Any, choice: dict[str, Any]) -> dict[str, Any]:
        return p.compute(PanelInput(scope, traces, replace(view0, **choice), info, inputs))

    store = _Store()
    variants: dict[tuple, dict[str, str]] = {}
    held: list[str] = []
    shown_only = [p for p in panels if p.name in SAVED_AS_SHOWN]
    panels = [p for p in panels if p.name not in SAVED_AS_SHOWN]
    for p in shown_only:
        fields = [f for f in p.depends if f in offered]
        key = tuple((f, getattr(view0, f)) for f in fields)
        for name, value in call(p, {f: getattr(view0, f) for f in CHOICES}).items():
            variants.setdefault(key, {})[name] = store.put(value)
    # panels that do not read the selected feature first: their rows say which features can be clicked
    for p in sorted(panels, key=lambda p: "selected_feature" in p.depends):
        fields = [f for f in p.depends if f in offered]
        base = {f: NONE_VALUE.get(f, getattr(view0, f)) for f in CHOICES}
        base["layer"] = view0.layer

        def count(fs: list[str]) -> int:
            return max(_product(len(features[n]) if f == "selected_feature" else len(domains[f])
                                for f in fs if f != "layer") for n in chosen)

        while count(fields) > MAX_CALLS:
            drop = max((f for f in fields if f != "layer"),
                       key=lambda f: max(len(features[n]) for n in chosen) if f == "selected_feature"
                       else len(domains[f]))
            fields.remove(drop)
            held.append(f"{p.name}: {drop}")
        rows: dict[str, list[tuple[dict[str, Any], str]]] = {}
        for layer in (chosen if "layer" in fields else [view0.layer]):
            doms = [features[layer] if f == "selected_feature" else domains[f] for f in fields if f != "layer"]
            for combo in itertools.product(*[sorted(d, key=repr) for d in doms]):
                choice = {**base, "layer": layer, **dict(zip([f for f in fields if f != "layer"], combo))}
                if choice["selected_feature"] >= 0 and choice["selected_feature"] not in features[choice["layer"]]:
                    continue
                outputs = call(p, choice)
                if "selected_feature" not in p.depends:
                    features[layer].update(_listed_features(outputs))
                for name, value in outputs.items():
                    rows.setdefault(name, []).append(({f: choice[f] for f in fields}, store.put(value)))
        sizes = {f: (len(chosen) if f == "layer" else max(len(features[n]) for n in chosen)
                     if f == "selected_feature" else len(domains[f])) for f in fields}
        for name, trait_rows in rows.items():
            keyf = _minimal_key(trait_rows, fields, sizes)
            for ch, h in trait_rows:
                key = tuple((f, ch[f]) for f in keyf)
                variants.setdefault(key, {})[name] = h

    state = synced_state(widget)
    for p in shown_only:  # other choices: empty (the saved choice's outputs are its variant)
        state.update({name: encode(type(getattr(widget, name))()) for name in p.outputs})
    state["status"] = {**state.get("status", {}), "busy": False, "stage": "saved snapshot", "latency_ms": 0.0,
                       "error": ""}
    names = ", ".join(f"L{n}" for n in chosen)
    keyed = {f for key in variants for f, _ in key}
    can = [w for f, w in (("layer", f"switch between the saved layers ({names})"), ("selected_token", "select a token"),
                          ("selected_feature", "select a feature a sidebar lists"), ("color_by", "change the colouring"))
           if f in keyed]
    note = ("Saved snapshot, no kernel. Hover the tokens" + "".join(f", {c}" for c in can) + ". A new prompt, "
            "steering, search and other layers need a live kernel.")
    if held:
        note += f" Not saved for every choice (too many): {', '.join(held)}."
    return Snapshot(
        state=state, title=f"qscope {widget._view} · {scope_name(scope)} · L{widget.layer}",
        variants=tuple(Variant(dict(key), {n: store.values[h] for n, h in traits.items()})
                       for key, traits in variants.items()),
        local=("diff",), resets={"layer": {"selected_feature": -1}}, seq=("request_seq", "result_seq"),
        note=note, kernel_notes={k: v for k, v in KERNEL_NOTES.items() if widget.has_trait(k)})


def scope_name(scope: Any) -> str:
    return str(getattr(scope, "name", "") or type(getattr(scope, "model", scope)).__name__)
