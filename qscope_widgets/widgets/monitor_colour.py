"""Colour the explorer's heatmap by a :class:`~qscope_widgets.monitor.Monitor`'s per-token score.

The monitor travels as the ``monitor`` input trait (its features, weights, threshold: plain JSON, so the page and
a saved notebook hold it too) and is rebuilt here against the view's scope, which validates every feature. The
colour is :func:`~qscope_widgets.monitor.token_colouring` of the trace drawn now (steered when edits are active):
free when the trace already holds the monitor's layers (the explorer charts every layer on small models), else
one forward of the prompt at those layers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import QScopeError
from .panels import INPUT_TRAITS, PanelInput, register_input


def monitor_spec(monitor: Any) -> dict[str, Any]:
    """The ``monitor`` trait's value for a Monitor."""
    from ..monitor import Monitor

    if not isinstance(monitor, Monitor):
        raise QScopeError(f"color_by_monitor needs a Monitor (scope.monitor(...)), got {type(monitor).__name__} "
                          f"{monitor!r:.60}")
    return {"features": [[int(n), int(f)] for n, f in monitor.features], "weights": list(monitor.weights),
            "threshold": monitor.threshold, "reduce": monitor.spec.reduce, "skip_first": monitor.spec.skip_first}


def monitor_from_spec(scope: Any, spec: Any):
    """The Monitor a ``monitor`` trait value describes (its features checked against ``scope``), or None."""
    from ..monitor import Monitor

    if spec in (None, {}):
        return None
    if not isinstance(spec, dict) or "features" not in spec:
        raise QScopeError(f"monitor must be a dict with 'features' (and 'weights', 'threshold'), got {spec!r:.80}")
    try:
        pairs = [(int(n), int(f)) for n, f in spec["features"]]
    except (TypeError, ValueError) as exc:
        raise QScopeError(f"monitor features must be [layer, feature] pairs, got {spec['features']!r:.80}") from exc
    return Monitor(scope, pairs, weights=spec.get("weights"), threshold=spec.get("threshold"),
                   reduce=spec.get("reduce", "max"), skip_first=spec.get("skip_first", True))


def check_monitor(scope: Any, value: Any) -> dict[str, Any]:
    monitor_from_spec(scope, value)
    return dict(value or {})


register_input("monitor", INPUT_TRAITS["monitor"], validate=check_monitor)


def monitor_values(p: PanelInput) -> np.ndarray:
    """The monitor's per-token score of the drawn trace, scaled to [0, 1] (float32, one per token)."""
    from ..monitor import token_colouring

    monitor = monitor_from_spec(p.scope, p.inputs.get("monitor"))
    if monitor is None:
        raise QScopeError("color_by='monitor' needs a monitor: call explorer.color_by_monitor(scope.monitor(...))")
    trace = p.trace
    if any(n not in trace.layers for n in monitor.layers):
        trace = p.scope.run(p.traces.request.prompt, layers=monitor.layers,
                            steering=list(p.traces.request.edits) or None)
    return np.asarray(token_colouring(monitor, trace), dtype=np.float32)
