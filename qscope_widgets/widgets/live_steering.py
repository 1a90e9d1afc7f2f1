"""``explorer.steering``: the view's pinned edits as a :class:`~qscope_widgets.Steering` whose changes re-run the
model and move the sliders (the widget's ``edits`` trait is the only copy; this object holds none)."""

from __future__ import annotations

from typing import Any, Iterator

from ..errors import QScopeError
from ..steering import Mode, Steering, SteeringEdit
from .view_state import edits_from_dicts


class LiveSteering(Steering):
    """The explorer's pinned edits as a :class:`Steering`: every change re-runs the model and moves the sliders."""

    def __init__(self, widget: Any):  # noqa: D107 - no list of its own: the widget's trait is the truth
        self._widget = widget

    @property
    def _edits(self) -> list[SteeringEdit]:  # type: ignore[override]
        return list(edits_from_dicts(self._widget.edits))

    def add(self, layer: int, feature: int, strength: float = 1.0, mode: Mode = "add",
            positions: Any = None) -> SteeringEdit:
        if positions is not None:
            raise QScopeError("the explorer's edits apply where its 'steer positions' control says (all, the "
                              "selected token, generated only); use scope.run(..., steering=...) for a position list")
        edit = SteeringEdit(layer, feature, strength, mode)
        w = self._widget
        w.scope.sae(layer).check_feature(feature)
        rows = [r for r in w.edits if (r["layer"], r["feature"]) != (layer, feature)]
        w.edits = [*rows, w.row_for(edit)]
        return edit

    def set(self, layer: int, feature: int, **changes: Any) -> None:
        """Change ``strength``, ``mode`` or ``enabled`` of a pinned feature (a bad value raises; nothing changes)."""
        bad = set(changes) - {"strength", "mode", "enabled"}
        if bad:
            raise QScopeError(f"only strength, mode and enabled can be set, not {sorted(bad)}")
        rows, found = [], False
        for r in self._widget.edits:
            if (r["layer"], r["feature"]) == (layer, feature):
                r, found = {**r, **changes}, True
            rows.append(r)
        if not found:
            raise QScopeError(f"feature {feature} of layer {layer} is not pinned; pinned: "
                              f"{[(r['layer'], r['feature']) for r in self._widget.edits]}")
        self._widget.edits = rows

    def remove(self, layer: int, feature: int) -> None:
        self._widget.unpin(layer, feature)

    def clear(self) -> None:
        self._widget.edits = []

    def __iter__(self) -> Iterator[SteeringEdit]:
        return iter(self._edits)

    def __repr__(self) -> str:
        return f"LiveSteering({self._edits!r})"
