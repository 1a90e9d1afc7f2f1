"""The attribution panel: why does the model predict ``attribution_target`` at the selected token (else the last)?

A pure function of the cached traces' request (prompt, active edits) and three inputs (``attribution_target``,
``attribution_position``, ``selected_token``). Attribution needs a backward pass, so it runs where forwards run: in
the view's worker (``RunScheduler``, so it is numbered like every request and a stale one is never drawn over a
newer one), and its result is cached per scope (:func:`cache_for`, weakly keyed: the cache never keeps a Scope
alive, and a new Scope never finds another's entries) and per (prompt, edits, target, position), so view-only
changes (layer, colour, feature) neither recompute it (not in ``depends``) nor, when they do re-run the panel
because the traces were re-made, repeat the backward pass.

The position attributed is ``attribution_position`` when it is a token of the prompt, else the last. The views
resolve it: :class:`AttributionView` sends its selected token (a click on a token attributes the prediction made
there); the explorer fixes it to the prediction that was clicked (or, for a target set from Python, the selected
token at that moment), so later token clicks there cost nothing.

Outputs (docs/widget-contract.md, "Panel attribution"): ``attribution_grid`` (float32 ``layers x positions``,
every node's attribution summed per cell, error nodes included), ``attribution`` (shape, top nodes, error share,
graph nodes and strongest edges as plain lists for the front end's own SVG), ``attribution_check`` (the
``verify`` button's answer, written by :class:`AttributionView`; reset with each new attribution).
"""

from __future__ import annotations

import dataclasses
import weakref
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


def check_attribution_position(scope: Any, value: Any) -> int:
    """``-1`` (follow the selected token) or a token index ``>= 0`` (checked against the prompt when used)."""
    from ..attribution.targets import AttributionError

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < -1:
        raise AttributionError(f"attribution_position must be an int >= -1 (-1: the selected token, else the "
                               f"last), got {value!r}")
    return int(value)


register_input("attribution_target", lambda: t.Unicode(""), validate=check_attribution_target)
register_input("attribution_position", lambda: t.Int(-1), validate=check_attribution_position)


def attribution_position(n_tokens: int, position: int) -> int:
    """The position attributed: ``position`` when it is a token of the prompt, else the last one."""
    return position if 0 <= position < n_tokens else n_tokens - 1


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
    """One scope's attributions and their outputs by (prompt, edits, target, position): LRU, thread-safe. The
    stored :class:`~qscope_widgets.attribution.Attribution` is kept without its scope (given back on
    :meth:`get`), so the cache never keeps a Scope (its model, its SAEs) alive."""

    def __init__(self, size: int = CACHE_SIZE):
        self._d: OrderedDict[tuple, tuple[Any, dict[str, Any]]] = OrderedDict()
        self._size, self._lock = size, Lock()
        self.computed = 0

    def get(self, scope: Any, key: tuple) -> tuple[Any, dict[str, Any]] | None:
        with self._lock:
            hit = self._d.get(key)
            if hit is None:
                return None
            self._d.move_to_end(key)
        return dataclasses.replace(hit[0], scope=scope), hit[1]

    def put(self, key: tuple, value: tuple[Any, dict[str, Any]]) -> None:
        with self._lock:
            self.computed += 1
            self._d[key] = (dataclasses.replace(value[0], scope=None), value[1])
            while len(self._d) > self._size:
                self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)


_CACHES: "weakref.WeakKeyDictionary[Any, AttributionCache]" = weakref.WeakKeyDictionary()
_CACHES_LOCK = Lock()
EMPTY = {"attribution_grid": b"", "attribution": {}, "attribution_check": {}}


def cache_for(scope: Any) -> AttributionCache:
    """The attribution cache of ``scope`` (weakly keyed: it goes when the scope goes)."""
    with _CACHES_LOCK:
        cache = _CACHES.get(scope)
        if cache is None:
            cache = _CACHES[scope] = AttributionCache()
        return cache


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
    pos = attribution_position(len(p.trace), int(p.inputs.get("attribution_position", -1)))
    edits = tuple(p.traces.request.edits)
    key = (p.traces.request.prompt, edits, target, pos)
    cache = cache_for(p.scope)
    hit = cache.get(p.scope, key)
    if hit is None:
        attr = attribute_request(p.scope, p.traces.request.prompt, edits, target, pos)
        hit = (attr, attribution_outputs(attr))
        cache.put(key, hit)
    return hit


@panel("attribution", inputs=("attribution_target", "selected_token", "attribution_position"),
       depends=("attribution_target", "attribution_position"),
       outputs={"attribution_grid": lambda: t.Bytes(b""), "attribution": lambda: t.Dict(),
                "attribution_check": lambda: t.Dict()})
def attribution_panel(p: PanelInput) -> dict[str, Any]:
    """Layer x position attribution grid, the top nodes with the error share, and the attribution graph of
    ``attribution_target`` at ``attribution_position`` (else the last token); empty when no target is set. (The
    views resolve the position: the attribution view sends the selected token, the explorer the position of the
    prediction clicked.)"""
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
