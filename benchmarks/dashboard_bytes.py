"""Bytes and kernel time per dashboard open in the Explorer, on the demo, beside a plain token click (the baseline).

For each feature the whole-prompt sidebar lists (layer 3), the explorer opens it the way a sidebar row does
(``selected_feature`` + ``color_by = "feature"``, a view change), and the traits that changed are counted as the
widget would send them (binary buffers as they are, everything else as its JSON; the style of
``benchmarks/real_shape.py``). The same for a token click (no dashboard change), for opening a feature on another
layer (the ``open_feature`` message), and for a try-your-own text. Prints median / max bytes and median kernel ms.

    python benchmarks/dashboard_bytes.py [--layer 3] [--sample-n 24]

``--sample-n N`` replaces the demo's index (built before range sampling) by one built here, with the index's own
builder, over a small corpus of the demo's kinds of text, with N sampled firings per feature, and runs the same
with ``sample_n=0`` beside it (the control: the bands' share of the bytes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

PROMPT = "In the beginning God created the heaven and the earth. And God said, Let there be light."


def payload_bytes(outputs: dict) -> int:
    """What one update sends to the page: binary buffers as they are, everything else as its JSON."""
    return sum(len(v) if isinstance(v, (bytes, bytearray, memoryview)) else len(json.dumps(v))
               for v in outputs.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layer", type=int, default=3)
    ap.add_argument("--sample-n", type=int, default=None)
    a = ap.parse_args()
    if a.sample_n is None:
        run(a.layer, None)
        return
    import tempfile

    from qscope_widgets import Scope
    from qscope_widgets.index import build_index

    corpus = [PROMPT, "The LORD is my shepherd; I shall not want.", "def main(argv):\n    return sorted(argv)\n",
              "You will be hungry again in one hour.", "And the LORD God formed man of the dust of the ground.",
              "The quick brown fox jumps over the lazy dog."] * 8
    with tempfile.TemporaryDirectory() as tmp:
        for n in (0, a.sample_n):
            scope = Scope.demo()
            idx = build_index(scope, corpus, out_dir=f"{tmp}/s{n}", layers=[a.layer], chunk_len=32, sample_n=n,
                              progress=False)
            scope.feature_index = idx
            print(f"\n--- an index built here over {len(corpus)} texts, sample_n={n}")
            run(a.layer, scope)


def run(layer: int, scope) -> None:
    """Open every feature of the whole-prompt sidebar in an Explorer on ``scope`` (default: the demo)."""
    from qscope_widgets import Scope
    from qscope_widgets.widgets import Explorer
    from qscope_widgets.widgets.panels import get_panels

    scope = scope or Scope.demo()
    ex = Explorer(scope, PROMPT, layer=layer)
    names = sorted({n for p in get_panels(ex.panels) for n in p.outputs} | {"status", "result_seq"})

    def update(action) -> tuple[int, float, int]:
        before = {k: getattr(ex, k) for k in names}
        f0 = ex.forwards
        t = time.perf_counter()
        action()
        ex.wait()
        dt = (time.perf_counter() - t) * 1e3
        changed = {k: getattr(ex, k) for k in names if getattr(ex, k) != before[k]}
        return payload_bytes(changed), dt, ex.forwards - f0

    features = [r["feature"] for r in ex.sidebar]
    rows: dict[str, list[tuple[int, float, int]]] = {"open feature (same layer)": [], "token click (baseline)": [],
                                                      "open feature (other layer)": [], "try your own text": []}
    dash_only = []
    for i, f in enumerate(features):
        rows["open feature (same layer)"].append(update(lambda: ex.set_state({"selected_feature": f,
                                                                              "color_by": "feature"})))
        dash_only.append(len(json.dumps(ex.dashboard)))
        rows["token click (baseline)"].append(update(lambda: setattr(ex, "selected_token", i % len(ex.tokens))))
        rows["try your own text"].append(update(lambda: setattr(ex, "dashboard_text", f"text {i}: And God said")))
    other = [n for n in scope.sae_layers if n != layer]
    for i, f in enumerate(features):
        n = other[i % len(other)]
        rows["open feature (other layer)"].append(update(lambda: ex.open_feature(n, f)))
        ex.open_feature(layer, features[0])
        ex.wait()

    print(f"demo, layer {layer}, {len(features)} sidebar features, prompt of {len(ex.tokens)} tokens")
    print(f"{'action':30s} {'median B':>9s} {'max B':>8s} {'median ms':>10s} {'forwards':>9s}"
          "   (forwards: the explorer's own; a try-your-own text runs one scope.run of its own)")
    for kind, xs in rows.items():
        b = [x[0] for x in xs]
        print(f"{kind:30s} {statistics.median(b):9.0f} {max(b):8d} {statistics.median(x[1] for x in xs):10.1f} "
              f"{sum(x[2] for x in xs):9d}")
    print(f"the dashboard trait alone: median {statistics.median(dash_only):.0f} B, max {max(dash_only)} B")
    ex.close()


if __name__ == "__main__":
    main()
