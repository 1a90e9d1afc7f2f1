"""Colour the explorer's heatmap by a :class:`~qscope_widgets.monitor.Monitor`'s per-token score.

The monitor travels as the ``monitor`` input trait (its features, weights, threshold: plain JSON, so the page and
a saved notebook hold it too) and is rebuilt here against the view's scope, which validates every feature. The
colour is :func:`~qscope_widgets.monitor.token_colouring` of the trace drawn now (steered when edits are active):
free when the trace already holds the monitor's layers (the explorer charts every layer on small models), else
one forward of the prompt at those layers. The colouring itself (``monitor_values``) is the heatmap panel's, in
``panels.py``; this module turns a Monitor into the trait value and validates it.
"""

from __future__ import annotations

from typing import Any

from ..errors import QScopeError
from .panels import INPUT_TRAITS, monitor_from_spec, monitor_values, register_input  # noqa: F401


def monitor_spec(monitor: Any) -> dict[str, Any]:
    """The ``monitor`` trait's value for a Monitor."""
    from ..monitor import Monitor

    if not isinstance(monitor, Monitor):
        raise QScopeError(f"color_by_monitor needs a Monitor (scope.monitor(...)), got {type(monitor).__name__} "
                          f"{monitor!r:.60}")
    return {"features": [[int(n), int(f)] for n, f in monitor.features], "weights": list(monitor.weights),
            "threshold": monitor.threshold, "reduce": monitor.spec.reduce, "skip_first": monitor.spec.skip_first}


def check_monitor(scope: Any, value: Any) -> dict[str, Any]:
    monitor_from_spec(scope, value)
    return dict(value or {})


register_input("monitor", INPUT_TRAITS["monitor"], validate=check_monitor)
