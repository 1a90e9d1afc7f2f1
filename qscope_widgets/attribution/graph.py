"""Attribution graphs: how the top nodes feed each other and the target.

Nodes are the ``max_nodes`` nodes with the largest ``|attribution|`` (their influence on the target, direct and
through every later layer), error nodes included unless asked otherwise, plus one target node. An edge ``U -> D``
between nodes of different layers (``layer(U) < layer(D)``) has weight

    w(U, D) = a_U * d s_D / d a_U,    s_D = a_D * g_D  (feature D)   or   err_D . g_D  (error D)

where ``a`` is a node's activation (the code, or the error vector), ``g_D = d metric / d a_D`` at the clean point
(held fixed), and ``a_D`` is recomputed from the residual stream as the SAE's encoder reads it (for a feature,
``relu(W_enc[f] . x + b_enc[f])`` with the active set fixed; for an error, ``x - x_hat(x)``). The weight is in
metric units: the part of D's attribution that flows from U (by the same first-order estimate), through every
path, including ones through nodes outside the graph. Edges ``U -> target`` carry U's attribution. Edges smaller
than ``edge_threshold`` times the largest are pruned (and all but the ``max_edges`` strongest, when given).

One forward builds the graph; each downstream node then costs one backward (``retain_graph``).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from .splice import frozen_weights
from .targets import AttributionError

if TYPE_CHECKING:
    import pandas as pd

    from .result import Attribution

SCHEMA = "qscope-attribution-graph-v1"


def node_id(kind: str, layer: int, position: int, feature: int = -1) -> str:
    return f"L{layer}/P{position}/" + (f"F{feature}" if kind == "feature" else "err")


@dataclass
class AttributionGraph:
    """Nodes (a DataFrame, with a ``target`` row) and weighted edges between them; see the module docstring."""

    nodes: "pd.DataFrame"
    edges: "pd.DataFrame"
    attribution: "Attribution" = field(repr=False)

    def __repr__(self) -> str:
        return f"AttributionGraph({len(self.nodes) - 1} nodes + target, {len(self.edges)} edges)"

    def to_dataframe(self) -> "pd.DataFrame":
        """The edges, with both ends' layer, position, feature and label joined in."""
        n = self.nodes.set_index("id")
        df = self.edges.copy()
        for end in ("source", "target"):
            for col in ("layer", "position", "feature", "label"):
                df[f"{end}_{col}"] = n.loc[df[end], col].to_numpy()
        return df

    def upstream(self, node: str, n: int = 5) -> "pd.DataFrame":
        """The ``n`` strongest edges into ``node`` (an id from ``nodes["id"]``)."""
        if node not in set(self.nodes["id"]):
            raise AttributionError(f"no node {node!r} in this graph; ids look like {self.nodes['id'].iloc[0]!r}")
        df = self.to_dataframe()
        df = df[df["target"] == node]
        return df.iloc[np.argsort(-df["weight"].abs().to_numpy(), kind="stable")].head(n).reset_index(drop=True)

    # ------------------------------------------------------------------------------------------ export
    def to_dict(self) -> dict[str, Any]:
        a = self.attribution
        t = a.target
        return {
            "schema": SCHEMA,
            "model": a.scope.name,
            "prompt_tokens": list(a.tokens),
            "position": a.position,
            "method": a.method,
            "target": {"description": t.description, "kind": t.kind, "token_ids": list(t.tokens),
                       "metric": a.metric},
            "error_share": a.error_share,
            "nodes": [{k: _plain(v) for k, v in row.items()} for row in self.nodes.to_dict("records")],
            "edges": [{k: _plain(v) for k, v in row.items()} for row in self.edges.to_dict("records")],
        }

    def to_json(self, path: Any = None, *, format: str = "qscope", indent: int | None = None) -> str:
        """The graph as JSON (``format="qscope"``: our schema, ``docs/attribution.md``; ``"neuronpedia"``: the
        node/link JSON the circuit-tracer and Neuronpedia graph viewers read). Written to ``path`` when given."""
        if format == "qscope":
            data = self.to_dict()
        elif format == "neuronpedia":
            data = self.to_neuronpedia()
        else:
            raise AttributionError(f"unknown graph format {format!r}; expected 'qscope' or 'neuronpedia'")
        text = json.dumps(data, indent=indent, allow_nan=False)
        if path is not None:
            from pathlib import Path

            Path(path).write_text(text)
        return text

    def to_neuronpedia(self, slug: str | None = None) -> dict[str, Any]:
        """circuit-tracer / Neuronpedia graph JSON: ``metadata``, ``qParams``, ``nodes`` (``node_id`` =
        ``"{layer}_{feature}_{ctx_idx}"``), ``links`` (``source``, ``target``, ``weight``). Residual SAE features
        are written with ``feature_type="cross layer transcoder"`` (the type those viewers draw as features) and
        error nodes as ``"mlp reconstruction error"``; the target is a ``logit`` node on layer ``n_layers + 1``."""
        a = self.attribution
        n_layers = a.scope.n_layers
        ids: dict[str, str] = {}
        nodes = []
        for r in self.nodes.itertuples():
            if r.kind == "target":
                tok = a.target.tokens[0] if a.target.tokens else 0
                nid = f"{n_layers + 1}_{tok}_{r.position}"
                nodes.append({"node_id": nid, "feature": int(tok), "layer": str(n_layers + 1),
                              "ctx_idx": int(r.position), "feature_type": "logit", "token_prob": _target_prob(a),
                              "is_target_logit": True, "clerp": f"target {a.target.description}",
                              "influence": None, "activation": None})
            elif r.kind == "error":
                nid = f"{r.layer}_error_{r.position}"
                nodes.append({"node_id": nid, "feature": -1, "layer": str(r.layer), "ctx_idx": int(r.position),
                              "feature_type": "mlp reconstruction error", "token_prob": 0.0,
                              "is_target_logit": False, "clerp": "reconstruction error",
                              "influence": abs(float(r.attribution)), "activation": float(r.activation)})
            else:
                nid = f"{r.layer}_{r.feature}_{r.position}"
                nodes.append({"node_id": nid, "feature": int(r.feature), "layer": str(r.layer),
                              "ctx_idx": int(r.position), "feature_type": "cross layer transcoder",
                              "token_prob": 0.0, "is_target_logit": False, "clerp": str(r.label),
                              "influence": abs(float(r.attribution)), "activation": float(r.activation)})
            nodes[-1].update({"jsNodeId": nid, "run_idx": 0, "reverse_ctx_idx": len(a.tokens) - 1 - int(r.position)})
            ids[r.id] = nid
        links = [{"source": ids[e.source], "target": ids[e.target], "weight": float(e.weight)}
                 for e in self.edges.itertuples()]
        prompt = a.meta.get("prompt") or "".join(a.tokens)
        return {
            "metadata": {"slug": slug or "qscope-attribution", "scan": a.scope.name, "prompt": prompt,
                         "prompt_tokens": list(a.tokens), "schema_version": 1,
                         "info": {"generator": {"name": "qscope-widgets", "method": a.method},
                                  "target": a.target.description}},
            "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sparsify": None},
            "nodes": nodes,
            "links": links,
        }

    # ------------------------------------------------------------------------------------------ picture
    def to_svg(self, width: int = 720, max_edges: int = 80) -> str:
        """Layers as rows (the target on top), positions as columns, nodes sized by ``|attribution|`` (blue
        positive, red negative; error nodes as squares), the strongest edges as lines (opacity by weight)."""
        a = self.attribution
        nodes = self.nodes
        positions = sorted(set(int(p) for p in nodes["position"]))
        rows = sorted(set(int(x) for x in nodes["layer"]))
        col = {p: i for i, p in enumerate(positions)}
        row = {layer: i for i, layer in enumerate(rows)}
        pad, top = 60, 30
        height = top + 60 * len(rows) + 40
        xs = lambda p: pad + (width - 2 * pad) * (col[p] + 0.5) / max(len(positions), 1)  # noqa: E731
        ys = lambda layer: height - 40 - 60 * row[layer]  # noqa: E731
        big = float(nodes["attribution"].abs().max() or 1.0)
        xy = {r.id: (xs(int(r.position)), ys(int(r.layer))) for r in nodes.itertuples()}
        out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
               f'height="{height}" font-family="sans-serif" font-size="10">']
        edges = self.edges.iloc[np.argsort(-self.edges["weight"].abs().to_numpy(), kind="stable")].head(max_edges)
        wmax = float(edges["weight"].abs().max()) if len(edges) else 1.0
        for e in edges.itertuples():
            (x1, y1), (x2, y2) = xy[e.source], xy[e.target]
            c = "#1f77b4" if e.weight >= 0 else "#d62728"
            op = 0.15 + 0.85 * abs(e.weight) / (wmax or 1.0)
            out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{c}" '
                       f'stroke-opacity="{op:.2f}" stroke-width="{1 + 2 * op:.1f}"/>')
        for layer in rows:
            name = "target" if layer > max(a.layers) else f"L{layer}"
            out.append(f'<text x="4" y="{ys(layer) + 3:.1f}" fill="#888">{name}</text>')
        for p in positions:
            out.append(f'<text x="{xs(p):.1f}" y="{height - 12}" text-anchor="middle" fill="#888">'
                       f'{_xml(a.tokens[p])}</text>')
        for r in nodes.itertuples():
            x, y = xy[r.id]
            rad = 4 + 12 * (abs(r.attribution) / big) ** 0.5
            c = "#1f77b4" if r.attribution >= 0 else "#d62728"
            title = _xml(f"{r.id} {r.label} attribution {r.attribution:+.3g}")
            if r.kind == "error":
                shape = (f'<rect x="{x - rad:.1f}" y="{y - rad:.1f}" width="{2 * rad:.1f}" height="{2 * rad:.1f}" '
                         f'fill="{c}" fill-opacity="0.35" stroke="{c}">')
            elif r.kind == "target":
                shape = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="8" fill="#444">'
            else:
                shape = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{rad:.1f}" fill="{c}" fill-opacity="0.8">'
            out.append(shape + f"<title>{title}</title>" + ("</rect>" if r.kind == "error" else "</circle>"))
        out.append("</svg>")
        return "".join(out)

    def _repr_svg_(self) -> str:
        return self.to_svg()


def _xml(text: str) -> str:
    """Escaped for SVG text: XML 1.0 forbids most control characters (byte-level tokens can hold them)."""
    clean = "".join(c if c >= " " or c in "\t\n" else "\N{REPLACEMENT CHARACTER}" for c in str(text))
    clean = "".join(c for c in clean if not 0xFFFE <= ord(c) <= 0xFFFF and not 0xD800 <= ord(c) <= 0xDFFF)
    return html.escape(clean)


def _plain(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


def _target_prob(a: "Attribution") -> float:
    if a.target.kind != "token":
        return 0.0
    for _, i, p in a.predictions:
        if i == a.target.tokens[0]:
            return p
    return 0.0


def build(a: "Attribution", *, max_nodes: int = 30, include_errors: bool = True, edge_threshold: float = 0.01,
          max_edges: int | None = None) -> AttributionGraph:
    """Compute the graph of ``a``'s top ``max_nodes`` nodes (see the module docstring)."""
    import pandas as pd

    if isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 1:
        raise AttributionError(f"max_nodes must be a positive int, got {max_nodes!r}")
    try:
        thr = float(edge_threshold)
    except (TypeError, ValueError):
        raise AttributionError(f"edge_threshold must be a number in [0, 1], got {edge_threshold!r}") from None
    if not 0.0 <= thr <= 1.0:
        raise AttributionError(f"edge_threshold must be in [0, 1], got {edge_threshold!r}")
    if max_edges is not None and (isinstance(max_edges, bool) or not isinstance(max_edges, int) or max_edges < 0):
        raise AttributionError(f"max_edges must be None or a non-negative int, got {max_edges!r}")
    scope = a.scope
    sel = a.top(max_nodes, kind=None if include_errors else "feature").copy()
    sel["id"] = [node_id(r.kind, r.layer, r.position, r.feature) for r in sel.itertuples()]
    recs = sel.to_dict("records")
    by_layer: dict[int, list[dict]] = {}
    for r in recs:
        by_layer.setdefault(int(r["layer"]), []).append(r)

    ids = a.token_ids[None].to(scope.device)
    leaves: dict[str, Tensor] = {}
    live: dict[str, Tensor] = {}
    with scope.lock, frozen_weights(scope.model), torch.inference_mode(False), torch.enable_grad():
        saes = {n: scope.saes.get(n) for n in by_layer}
        handles = []

        def make_hook(layer: int):
            sae = saes[layer]

            def hook(module: nn.Module, args, output):
                h = output[0] if isinstance(output, tuple) else output
                new_h = h
                for r in by_layer[layer]:
                    p, nid = int(r["position"]), r["id"]
                    x = h[0, p]
                    if r["kind"] == "feature":
                        f = int(r["feature"])
                        xr = x.to(sae.dtype)
                        if sae.cfg.apply_b_dec_to_input:
                            xr = xr - sae.b_dec
                        pre = xr @ sae.W_enc[f] + sae.b_enc[f]
                        relu = sae.cfg.architecture != "topk" or sae.cfg.topk_activation == "relu"
                        live[nid] = pre.relu() if relu else pre
                        leaf = torch.tensor(float(r["activation"]), dtype=h.dtype, device=h.device,
                                            requires_grad=True)
                        delta = (leaf - leaf.detach()) * sae.decoder_direction(f).to(h.dtype)
                    else:
                        xr = x[None]
                        live[nid] = (xr - sae(xr).to(h.dtype))[0]
                        leaf = (x.detach() - sae(x.detach()[None]).to(h.dtype)[0]).requires_grad_(True)
                        delta = leaf - leaf.detach()
                    leaves[nid] = leaf
                    onehot = torch.zeros(h.shape[1], dtype=h.dtype, device=h.device)
                    onehot[p] = 1
                    new_h = new_h + onehot[None, :, None] * delta
                return (new_h,) + tuple(output[1:]) if isinstance(output, tuple) else new_h

            return hook

        try:
            for n in sorted(by_layer):
                handles.append(scope.layers[n].register_forward_hook(make_hook(n)))
            from .splice import forward_logits

            logits = forward_logits(scope, ids)
        finally:
            for hnd in handles:
                hnd.remove()
        m = a.target.metric(logits[0])
        order = [r["id"] for r in recs]
        g_all = torch.autograd.grad(m, [leaves[i] for i in order], retain_graph=True, allow_unused=True)
        grad = {i: (torch.zeros_like(leaves[i]) if g is None else g.detach()) for i, g in zip(order, g_all)}
        rows = []
        for r in recs:
            d_id, d_layer = r["id"], int(r["layer"])
            ups = [u for u in recs if int(u["layer"]) < d_layer and int(u["position"]) <= int(r["position"])]
            if not ups:
                continue
            s = (live[d_id] * grad[d_id].to(live[d_id].dtype)).sum()
            if not s.requires_grad:
                continue
            gs = torch.autograd.grad(s, [leaves[u["id"]] for u in ups], retain_graph=True, allow_unused=True)
            for u, g in zip(ups, gs):
                if g is None:
                    continue
                w = float((leaves[u["id"]].detach() * g).sum())
                if w != 0.0:
                    rows.append((u["id"], d_id, w))
        del m, logits, leaves, live, saes
    target_id = "target"
    for r in recs:
        rows.append((r["id"], target_id, float(r["attribution"])))
    edges = pd.DataFrame(rows, columns=["source", "target", "weight"])
    if len(edges):
        wmax = float(edges["weight"].abs().max())
        edges = edges[edges["weight"].abs() >= thr * wmax]
        edges = edges.iloc[np.argsort(-edges["weight"].abs().to_numpy(), kind="stable")]
        if max_edges is not None:
            edges = edges.head(max_edges)
        edges = edges.reset_index(drop=True)
    tgt_row = {"id": target_id, "layer": max(a.layers) + 1, "position": a.position, "token": a.tokens[a.position],
               "feature": -1, "label": a.target.description, "activation": a.metric, "attribution": a.metric,
               "kind": "target"}
    nodes = pd.concat([sel, pd.DataFrame([tgt_row])], ignore_index=True)
    nodes = nodes[["id", "layer", "position", "token", "feature", "label", "activation", "attribution", "kind"]]
    return AttributionGraph(nodes=nodes, edges=edges, attribution=a)
