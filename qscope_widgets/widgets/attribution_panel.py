"""The attribution panel: why does the model predict ``attribution_target`` at the selected token (else the last)?

A pure function of the cached traces' request (prompt, active edits) and two inputs (``attribution_target``,
``selected_token``). Attribution needs a backward pass, so it runs where forwards run: in the view's worker
(``RunScheduler``), and its result is cached per (prompt, edits, target, position) in :data:`CACHE`, so view-only
changes (layer, colour, feature) neither recompute it (not in ``depends``) nor, when they do re-run the panel
because the traces were re-made, repeat the backward pass.

Outputs (docs/widget-contract.md, "Panel attribution"): ``attribution_grid`` (float32 ``layers x positions``,
every node's attribution summed per cell, error nodes included), ``attribution`` (shape, top nodes, error share,
graph nodes and strongest edges as plain lists for the front end's own SVG), ``attribution_check`` (the
``verify`` button's answer, written by :class:`AttributionView`; reset with each new attribution).
"""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock
from typing import Any

import numpy as np
import traitlets as t

from ..errors import QScopeError
from .panels import PanelInput, panel, register_input
from .view_state import f32

TOP_NODES = 20      # rows of the ranked list
GRAPH_NODES = 16    # nodes of the drawn graph (one backward each)
GRAPH_EDGES = 40    # strongest edges drawn
CACHE_SIZE = 16


def check_attribution_target(scope: Any, value: Any) -> str:
    """``""`` (no attribution) or one token, as a string; an int id becomes its token string. Raises a
    :class:`~qscope_widgets.attribution.TargetError` naming the value otherwise (two tokens, unknown id...)."""
    from ..attribution.compute import vocab_size
    from ..attribution.targets import TargetError, resolve_target

    if isinstance(value, bool):
        raise TargetError(f"attribution_target must be a token string or id, got the bool {value!r}")
    if isinstance(value, (int, np.integer)):
        resolve_target(int(value), scope.tokenizer, vocab_size(scope), scope.token_strings)
        text = scope.token_strings([int(value)])[0]
        ids = scope.tokenizer(text, add_special_tokens=False)["input_ids"]
        if list(ids) != [int(value)]:
            raise TargetError(f"token id {value} decodes to {text!r}, which does not encode back to that one id; "
                              "use scope.attribute(prompt, id) in Python for it")
        return text
    if not isinstance(value, str):
        raise TargetError(f"attribution_target must be a token string or id, got {type(value).__name__} {value!r}")
    if value:
        resolve_target(value, scope.tokenizer, vocab_size(scope), scope.token_strings)
    return value


register_input("attribution_target", lambda: t.Unicode(""), validate=check_attribution_target)


def attribution_position(n_tokens: int, selected_token: int) -> int:
    """The position attributed: the selected token, else the last one."""
    return selected_token if 0 <= selected_token < n_tokens else n_tokens - 1


def attribution_grid(attr: Any) -> np.ndarray:
    """``(len(attr.layers), position + 1)`` float32: each cell the sum of its nodes' attributions (features and
    the error node), summed in float64 from :meth:`Attribution.to_dataframe`."""
    df = attr.to_dataframe()
    rows = {n: i for i, n in enumerate(attr.layers)}
    grid = np.zeros((len(attr.layers), attr.position + 1), dtype=np.float64)
    np.add.at(grid, (df["layer"].map(rows).to_numpy(int), df["position"].to_numpy(int)),
              df["attribution"].to_numpy(np.float64))
    return grid.astype(np.float32)


def _node_row(r: Any) -> dict[str, Any]:
    return {"layer": int(r["layer"]), "position": int(r["position"]), "token": str(r["token"]),
            "feature": int(r["feature"]), "label": str(r["label"]), "activation": float(r["activation"]),
            "attribution": float(r["attribution"]), "kind": str(r["kind"])}


def attribution_outputs(attr: Any, *, top: int = TOP_NODES, graph_nodes: int = GRAPH_NODES,
                        graph_edges: int = GRAPH_EDGES) -> dict[str, Any]:
    """The panel's traits for an :class:`~qscope_widgets.attribution.Attribution` (a pure conversion)."""
    grid = attribution_grid(attr)
    g = attr.graph(max_nodes=graph_nodes, max_edges=graph_edges).to_dict()
    m = float(np.abs(grid).max()) if grid.size else 0.0
    return {
        "attribution_grid": f32(grid),
        "attribution": {
            "target": attr.target.description, "position": int(attr.position), "method": attr.method,
            "metric": float(attr.metric), "error_share": float(attr.error_share),
            "layers": [int(n) for n in attr.layers], "shape": [int(s) for s in grid.shape],
            "tokens": list(attr.tokens), "range": [-m, m],
            "top": [_node_row(r) for r in attr.top(top).to_dict("records")],
            "graph": {"nodes": [{"id": str(n["id"]), **_node_row(n)} for n in g["nodes"]],
                      "edges": [[str(e["source"]), str(e["target"]), float(e["weight"])] for e in g["edges"]]},
        },
        "attribution_check": {},
    }


class AttributionCache:
    """Attributions and their outputs by (prompt, edits, target, position): LRU, thread-safe."""

    def __init__(self, size: int = CACHE_SIZE):
        self._d: OrderedDict[tuple, tuple[Any, dict[str, Any]]] = OrderedDict()
        self._size, self._lock = size, Lock()
        self.computed = 0

    def get(self, key: tuple) -> tuple[Any, dict[str, Any]] | None:
        with self._lock:
            hit = self._d.get(key)
            if hit is not None:
                self._d.move_to_end(key)
            return hit

    def put(self, key: tuple, value: tuple[Any, dict[str, Any]]) -> None:
        with self._lock:
            self.computed += 1
            self._d[key] = value
            while len(self._d) > self._size:
                self._d.popitem(last=False)


CACHE = AttributionCache()
EMPTY = {"attribution_grid": b"", "attribution": {}, "attribution_check": {}}


def attribute_request(scope: Any, prompt: str, edits: tuple, target: str, position: int) -> Any:
    """``scope.attribute(prompt, target, position=position)`` under the active steering ``edits`` (the model as
    the view draws it)."""
    if not edits:
        return scope.attribute(prompt, target, position=position)
    with scope.steering(list(edits)):
        return scope.attribute(prompt, target, position=position)


def cached_attribution(p: PanelInput) -> tuple[Any, dict[str, Any]] | None:
    """The (Attribution, outputs) the panel shows for these inputs, computed once per key; None without target."""
    target = p.inputs.get("attribution_target", "")
    if not target:
        return None
    pos = attribution_position(len(p.trace), p.view.selected_token)
    edits = tuple(p.traces.request.edits)
    key = (id(p.scope), p.traces.request.prompt, edits, target, pos)
    hit = CACHE.get(key)
    if hit is None:
        attr = attribute_request(p.scope, p.traces.request.prompt, edits, target, pos)
        hit = (attr, attribution_outputs(attr))
        CACHE.put(key, hit)
    return hit


@panel("attribution", inputs=("attribution_target", "selected_token"),
       depends=("attribution_target", "selected_token"),
       outputs={"attribution_grid": lambda: t.Bytes(b""), "attribution": lambda: t.Dict(),
                "attribution_check": lambda: t.Dict()})
def attribution_panel(p: PanelInput) -> dict[str, Any]:
    """Layer x position attribution grid, the top nodes with the error share, and the attribution graph of
    ``attribution_target`` at the selected token (else the last); empty when no target is set."""
    hit = cached_attribution(p)
    if hit is None:
        return dict(EMPTY)
    return dict(hit[1])


def verification_dict(v: Any) -> dict[str, Any]:
    """A :class:`~qscope_widgets.attribution.Verification` as the ``attribution_check`` trait."""
    tab = v.table
    return {"n": int(len(tab)), "spearman": _num(v.spearman), "pearson": _num(v.pearson), "metric": float(v.metric),
            "rows": [{"layer": int(r["layer"]), "position": int(r["position"]), "feature": int(r["feature"]),
                      "estimate": float(r["estimate"]), "true_effect": float(r["true_effect"])}
                     for r in tab.to_dict("records")]}


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def check_verify_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 2 <= int(n) <= 200:
        raise QScopeError(f"verify n must be an int in 2..200, got {n!r}")
    return int(n)
