"""The result of an attribution: node tables, totals, the error share, exact-ablation verification and the graph.

Sign convention everywhere: a node's ``attribution`` estimates ``metric(clean) - metric(node ablated)``, so a
positive node pushes the target up and removing it would lower the metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..steering import SteeringEdit
from .targets import AttributionError, Target

if TYPE_CHECKING:
    import pandas as pd

    from ..scope import Scope
    from .graph import AttributionGraph

COLUMNS = ["layer", "position", "token", "feature", "label", "activation", "attribution", "kind"]


def spearman(a: Any, b: Any) -> float:
    """Spearman rank correlation (average ranks for ties); NaN with fewer than 2 points or a constant side."""
    import pandas as pd

    x, y = pd.Series(np.asarray(a, dtype=float)), pd.Series(np.asarray(b, dtype=float))
    if len(x) < 2:
        return float("nan")
    rx, ry = x.rank(), y.rank()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


@dataclass
class Verification:
    """Estimate beside the exact ablation effect for the top nodes; ``spearman`` is their rank correlation."""

    table: "pd.DataFrame"
    spearman: float
    pearson: float
    metric: float
    method: str

    def to_dataframe(self) -> "pd.DataFrame":
        return self.table.copy()

    def __repr__(self) -> str:
        return (f"Verification({len(self.table)} nodes, method={self.method}, spearman={self.spearman:.3f}, "
                f"pearson={self.pearson:.3f})")


@dataclass
class Attribution:
    """Per-node attributions of one target at one position (see :meth:`qscope_widgets.Scope.attribute`).

    ``nodes[layer]`` holds ``ids``/``values``/``attr`` ``(seq, k)`` for the feature nodes and ``err_norm``/
    ``err_attr`` ``(seq,)`` for the error nodes, on CPU; ``metric`` is the clean metric value.
    """

    scope: "Scope" = field(repr=False)
    token_ids: Tensor
    tokens: list[str]
    position: int
    target: Target
    method: str
    steps: int | None
    layers: list[int]
    nodes: dict[int, dict[str, Tensor]] = field(repr=False)
    metric: float
    predictions: list[tuple[str, int, float]]
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    _frame: Any = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (f"Attribution({self.target.description} at position {self.position} "
                f"({self.tokens[self.position]!r}), metric={self.metric:.3f}, method={self.method}, "
                f"layers={self.layers}, error_share={self.error_share:.2f})")

    def _repr_html_(self, n_nodes: int = 15) -> str:
        """The notebook display: the prompt coloured by each position's total attribution, then the strongest
        nodes (``qscope_widgets.html.attribution_html``, a core renderer: the import runs downward)."""
        from ..html import attribution_html

        return attribution_html(self, n_nodes=n_nodes)

    # ------------------------------------------------------------------------------------------ tables
    def _labels(self, layer: int, features: np.ndarray) -> list[str]:
        idx = getattr(self.scope, "feature_index", None)
        if idx is None or layer not in getattr(idx, "layers", []):
            return [""] * len(features)
        try:
            df = idx.features(layer)
            col = df["explanation"].where(df["explanation"].astype(bool), df["label"]) if "explanation" in df else \
                df["label"]
            return [str(col.iloc[int(f)]) for f in features]
        except Exception:  # a partial index must not break attribution tables
            return [""] * len(features)

    def to_dataframe(self) -> "pd.DataFrame":
        """One row per node (active feature codes and one error node per layer and position), by ``|attribution|``
        descending. Error nodes have ``feature = -1``, ``kind = "error"`` and the error's norm as ``activation``."""
        if self._frame is None:
            import pandas as pd

            parts = []
            for n in self.layers:
                d = self.nodes[n]
                vals, ids, attr = d["values"].numpy(), d["ids"].numpy(), d["attr"].numpy()
                pos, slot = np.nonzero(vals != 0)
                feats = ids[pos, slot]
                parts.append(pd.DataFrame({
                    "layer": n, "position": pos, "token": [self.tokens[p] for p in pos], "feature": feats,
                    "label": self._labels(n, feats), "activation": vals[pos, slot], "attribution": attr[pos, slot],
                    "kind": "feature"}))
                seq = len(d["err_attr"])
                parts.append(pd.DataFrame({
                    "layer": n, "position": np.arange(seq), "token": self.tokens[:seq], "feature": -1,
                    "label": "reconstruction error", "activation": d["err_norm"].numpy(),
                    "attribution": d["err_attr"].numpy(), "kind": "error"}))
            df = pd.concat(parts, ignore_index=True)[COLUMNS]
            df = df.iloc[np.argsort(-df["attribution"].abs().to_numpy(), kind="stable")].reset_index(drop=True)
            self._frame = df
        return self._frame.copy()

    def top(self, n: int = 20, kind: str | None = None) -> "pd.DataFrame":
        """The ``n`` nodes with the largest ``|attribution|``; ``kind="feature"`` or ``"error"`` filters first."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise AttributionError(f"n must be a positive int, got {n!r}")
        if kind not in (None, "feature", "error"):
            raise AttributionError(f"kind must be None, 'feature' or 'error', got {kind!r}")
        df = self.to_dataframe()
        if kind is not None:
            df = df[df["kind"] == kind]
        return df.head(n).reset_index(drop=True)

    def by_layer(self) -> "pd.DataFrame":
        """Per layer: total signed attribution of its features and of its errors, and the error share of ``|.|``."""
        return self._totals("layer")

    def by_position(self) -> "pd.DataFrame":
        """Per position: the same totals, summed over layers."""
        return self._totals("position")

    def _totals(self, key: str) -> "pd.DataFrame":
        import pandas as pd

        df = self.to_dataframe()
        df["abs"] = df["attribution"].abs()
        g = df.groupby([key, "kind"])[["attribution", "abs"]].sum().unstack("kind", fill_value=0.0)
        out = pd.DataFrame(index=g.index)
        out["features"] = g[("attribution", "feature")] if ("attribution", "feature") in g else 0.0
        out["errors"] = g[("attribution", "error")] if ("attribution", "error") in g else 0.0
        out["total"] = out["features"] + out["errors"]
        fa = g[("abs", "feature")] if ("abs", "feature") in g else 0.0
        ea = g[("abs", "error")] if ("abs", "error") in g else 0.0
        out["error_share"] = (ea / (fa + ea)).fillna(0.0)
        if key == "position":
            out.insert(0, "token", [self.tokens[p] for p in out.index])
        return out

    @property
    def error_share(self) -> float:
        """``sum |error attributions| / sum |all attributions|``: how much the SAEs leave unexplained (0 = none)."""
        fa = sum(float(d["attr"].abs().sum()) for d in self.nodes.values())
        ea = sum(float(d["err_attr"].abs().sum()) for d in self.nodes.values())
        return ea / (fa + ea) if fa + ea > 0 else 0.0

    # ------------------------------------------------------------------------------------------ verification
    def ablation_effect(self, layer: int, position: int, feature: int) -> float:
        """``metric(clean) - metric(feature ablated)``, exactly: one forward with the steering path's ``ablate``
        edit on that feature at that layer and position, the rest of the model running normally."""
        from .splice import forward_logits

        scope = self.scope
        ids = self.token_ids[None].to(scope.device)
        edit = SteeringEdit(int(layer), int(feature), 1.0, "ablate", (int(position),))
        with scope.steering(edit, prompt_len=ids.shape[1]), torch.inference_mode():
            logits = forward_logits(scope, ids)[0]
        return self.metric - float(self.target.metric(logits))

    def verify(self, n: int = 20) -> Verification:
        """Exactly ablate each of the top ``n`` feature nodes (one forward each) and compare with the estimate.

        Returns a :class:`Verification` whose table has ``estimate`` (the node's attribution) beside
        ``true_effect`` (``metric(clean) - metric(ablated)``), and their Spearman and Pearson correlations.
        """
        top = self.top(n, kind="feature")
        true = [self.ablation_effect(r.layer, r.position, r.feature) for r in top.itertuples()]
        table = top.drop(columns=["kind"]).rename(columns={"attribution": "estimate"})
        table["true_effect"] = true
        est = table["estimate"].to_numpy(float)
        tr = np.asarray(true, dtype=float)
        pear = float(np.corrcoef(est, tr)[0, 1]) if len(tr) > 1 and est.std() > 0 and tr.std() > 0 else float("nan")
        return Verification(table, spearman(est, tr), pear, self.metric, self.method)

    # ------------------------------------------------------------------------------------------ graph
    def graph(self, max_nodes: int = 30, *, include_errors: bool = True, edge_threshold: float = 0.01,
              max_edges: int | None = None) -> "AttributionGraph":
        """Edges between the top nodes of different layers; see :func:`qscope_widgets.attribution.graph.build`."""
        from .graph import build

        return build(self, max_nodes=max_nodes, include_errors=include_errors, edge_threshold=edge_threshold,
                     max_edges=max_edges)
