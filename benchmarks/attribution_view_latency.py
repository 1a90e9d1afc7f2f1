"""Latency of the attribution view on the demo: a new (target, position) runs attribute + graph on the worker; a
key seen before and a view-only change (colour) do not. Baseline beside it: the same prompt's plain forward
(Explorer with the heatmap only). Prints one line per case; CPU, ratios within this run only."""

from __future__ import annotations

import time

from qscope_widgets import Scope
from qscope_widgets.widgets import AttributionView, TokenHeatmap
from qscope_widgets.widgets import attribution_panel as ap

PROMPT = "In the beginning God created the heaven and the"


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def main() -> None:
    scope = Scope.demo()
    base = timed(lambda: TokenHeatmap(scope, PROMPT, layer=3).close())
    print(f"baseline: heatmap view, first forward            {base:8.1f} ms")
    v = AttributionView(scope, PROMPT, layer=3)

    def set_and_wait(**kw):
        v.set_state(kw)
        v.wait()

    print(f"attribution: new target ' earth' (last token)     {timed(lambda: set_and_wait(attribution_target=' earth')):8.1f} ms"
          f"  backward passes so far {ap.cache_for(scope).computed}")
    print(f"attribution: new position (token 4)              {timed(lambda: set_and_wait(selected_token=4)):8.1f} ms"
          f"  backward passes so far {ap.cache_for(scope).computed}")
    print(f"attribution: back to the last token (cached)     {timed(lambda: set_and_wait(selected_token=-1)):8.1f} ms"
          f"  backward passes so far {ap.cache_for(scope).computed}")
    print(f"view-only: colour by error                       {timed(lambda: set_and_wait(color_by='error')):8.1f} ms"
          f"  backward passes so far {ap.cache_for(scope).computed}")
    print(f"verify n=10 (10 exact ablations)                 {timed(lambda: v.verify(10)):8.1f} ms"
          f"  spearman {v.attribution_check['spearman']:.3f}")
    v.close()


if __name__ == "__main__":
    main()
