"""Static export without a browser: snapshots hold exactly what the live widget shows for each saved choice, pages
are self-contained, the display output carries a static fallback, and traces render as plain HTML."""

from __future__ import annotations

import base64
import gzip
import json
import re

import numpy as np
import pytest

from qscope_widgets.errors import QScopeError

PROMPT = "In the beginning God created the heaven and the earth."
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def explorer(demo):
    ex = demo.explore(PROMPT)
    yield ex
    ex.close()


def decode(v):
    """The snapshot's JSON values back as Python values (bytes for {"$bytes": ...})."""
    if isinstance(v, dict) and set(v) == {"$bytes"}:
        return base64.b64decode(v["$bytes"])
    if isinstance(v, dict):
        return {k: decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [decode(x) for x in v]
    return v


def resolve(snap, **inputs):
    """What the static host shows for these inputs: the saved state, then every matching variant, least specific
    first (the same rule as js/src/static-host.js)."""
    d = json.loads(snap.to_json())
    want = {**d["state"], **inputs}
    out = dict(want)
    found = [v for v in d["variants"] if all(want.get(k) == x for k, x in v["key"].items())]
    for v in sorted(found, key=lambda v: len(v["key"])):
        out.update(v["state"])
    return decode(out)


def live(ex, **inputs):
    """What the live widget shows after these inputs are set."""
    for k, v in inputs.items():
        setattr(ex, k, v)
    ex.wait()
    return {k: getattr(ex, k) for k in ("tokens", "codes_ids", "codes_values", "token_values", "sidebar",
                                        "sidebar_title", "value_range")}


def test_snapshot_reproduces_the_live_explorer_for_every_saved_layer_token_and_feature(demo, explorer):
    from qscope_widgets.widgets.export import snapshot_of

    layers = [demo.sae_layers[0], explorer.layer]
    snap = snapshot_of(explorer, layers=layers)
    try:
        for layer in layers:
            got = resolve(snap, layer=layer, selected_token=-1, selected_feature=-1, color_by="strongest")
            want = live(explorer, layer=layer, selected_token=-1, selected_feature=-1, color_by="strongest")
            for name in ("tokens", "codes_ids", "codes_values", "token_values", "sidebar", "sidebar_title"):
                assert got[name] == want[name], (layer, name)
            t = 3
            got = resolve(snap, layer=layer, selected_token=t, selected_feature=-1, color_by="strongest")
            want = live(explorer, selected_token=t)
            assert got["sidebar"] == want["sidebar"] and got["sidebar_title"] == want["sidebar_title"]
            f = want["sidebar"][1]["feature"]  # a feature a user can click in that sidebar
            got = resolve(snap, layer=layer, selected_token=t, selected_feature=f, color_by="feature")
            want = live(explorer, selected_feature=f, color_by="feature")
            assert got["token_values"] == want["token_values"] and got["value_range"] == want["value_range"]
            got = resolve(snap, layer=layer, selected_token=t, selected_feature=f, color_by="error")
            assert got["token_values"] == live(explorer, color_by="error")["token_values"]
    finally:
        explorer.selected_token, explorer.selected_feature, explorer.color_by = -1, -1, "strongest"
        explorer.layer = demo.sae_layers[len(demo.sae_layers) // 2]
        explorer.wait()


def test_snapshot_keeps_only_the_saved_layers_codes(demo, explorer):
    from qscope_widgets.widgets.export import snapshot_of

    snap = snapshot_of(explorer)
    coded = [v for v in snap.variants if "codes_ids" in v.state]
    assert len(coded) == 1 and "layer" not in coded[0].key  # one saved layer: its codes, saved once
    snap2 = snapshot_of(explorer, layers=[demo.sae_layers[0]])
    assert {v.key["layer"] for v in snap2.variants if "codes_ids" in v.state} == {demo.sae_layers[0], explorer.layer}


def test_heatmap_values_in_the_snapshot_equal_the_trace(demo, explorer):
    from qscope_widgets.widgets.export import snapshot_of

    layer = demo.sae_layers[0]
    snap = snapshot_of(explorer, layers=[layer])
    trace = demo.run(PROMPT, layers=[layer])
    got = np.frombuffer(resolve(snap, layer=layer, color_by="strongest", selected_feature=-1)["token_values"], "<f4")
    np.testing.assert_array_equal(got, trace.layers[layer].values[:, 0].numpy())


def test_to_html_writes_one_self_contained_page(tmp_path, explorer):
    path = explorer.to_html(tmp_path / "explorer.html")
    text = path.read_text()
    assert path.stat().st_size < 200_000
    # nothing is fetched: no src/href to another place, no CSS import or remote url()
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)=""", text)
    assert "@import" not in text and not re.search(r"url\(\s*['\"]?(https?:)?//", text)
    data = re.search(r'<script type="application/gzip\+base64" id="qscope-data-0">([^<]+)</script>', text)
    snap = json.loads(gzip.decompress(base64.b64decode(data.group(1))))
    assert snap["state"]["prompt"] == PROMPT and snap["state"]["_view"] == "explorer"
    assert snap["state"]["status"]["busy"] is False
    plain = explorer.to_html(compress=False)
    assert '<script type="application/json" id="qscope-data-0">' in plain and "</script>" not in \
        plain.split('id="qscope-data-0">')[1].split("</script>")[0]


def test_display_output_holds_the_widget_view_and_a_static_snapshot_of_the_same_values(explorer):
    data, _meta = explorer._repr_mimebundle_()
    assert WIDGET_VIEW in data and "text/plain" in data
    snap = data["text/html"]
    assert "<script" not in snap  # GitHub and sanitizers drop scripts: the fallback needs none
    assert len(snap) < 30_000
    values = [float(v) for v in re.findall(r'class="qscope-token" data-index="\d+" data-value="([^"]+)"', snap)]
    np.testing.assert_array_equal(np.asarray(values, dtype=np.float32), np.frombuffer(explorer.token_values, "<f4"))
    top = explorer.sidebar[0]
    assert f"#{top['feature']}" in snap


def test_dashboard_exports_and_has_a_fallback(tmp_path, demo):
    dash = demo.feature(demo.sae_layers[0], 3)
    try:
        data, _ = dash._repr_mimebundle_()
        assert f"feature L{demo.sae_layers[0]} #3" in data["text/html"]
        path = dash.to_html(tmp_path / "dash.html")
        assert path.stat().st_size > 40_000
        with pytest.raises(QScopeError, match="takes no options"):
            dash.to_html(tmp_path / "x.html", layers=[1])
    finally:
        dash.close()


def test_bad_export_arguments_raise_errors_that_name_them(tmp_path, demo, explorer):
    with pytest.raises(QScopeError, match="99"):
        explorer.to_html(tmp_path / "a.html", layers=[99])
    with pytest.raises(QScopeError, match="layers=\\[\\]"):
        explorer.to_html(tmp_path / "a.html", layers=[])
    with pytest.raises(QScopeError, match="directory"):
        explorer.to_html(tmp_path)
    with pytest.raises(QScopeError, match="does not exist"):
        explorer.to_html(tmp_path / "missing" / "a.html")
    with pytest.raises(QScopeError, match="max_tokens"):
        explorer.to_html(tmp_path / "a.html", max_tokens=3)
    assert not list(tmp_path.iterdir())  # nothing half-written
    explorer.wait()  # still usable
    assert explorer.to_html(tmp_path / "ok.html").exists()


def test_several_widgets_in_one_page(tmp_path, demo, explorer):
    from qscope_widgets.widgets.export import to_html

    dash = demo.feature(explorer.layer, 3)
    try:
        text = to_html([explorer, dash], layers=[explorer.layer])
        assert 'id="qscope-data-0"' in text and 'id="qscope-data-1"' in text
    finally:
        dash.close()


def test_trace_repr_html_shows_the_traces_values_without_javascript(demo):
    trace = demo.run(PROMPT, layers=demo.sae_layers[:2])
    page = trace._repr_html_()
    assert "<script" not in page
    for layer in demo.sae_layers[:2]:
        codes = trace.layers[layer]
        block = page.split(f'data-qscope="static-strip" data-layer="{layer}"')[1].split("</div>")[0]
        strip = [float(v) for v in re.findall(r'data-value="([^"]+)"', block)]
        np.testing.assert_array_equal(np.asarray(strip, np.float32), codes.values[:, 0].numpy())
        matrix = page.split(f'data-qscope="static-matrix" data-layer="{layer}"')[1].split("</table>")[0]
        labels = re.findall(r'<tr data-row="\d+"[^>]*><th[^>]*>#(\d+)</th>', matrix)
        top = trace.top_features(layer, n=8, skip_first=True)
        assert [int(x) for x in labels] == [int(f) for f in top.feature]
        first_row = matrix.split('<tr data-row="0"')[1].split("</tr>")[0]
        first = [float(v) for v in re.findall(r'data-value="([^"]+)"', first_row)]
        np.testing.assert_array_equal(np.asarray(first, np.float32), codes.activation_of(int(labels[0])).numpy())


def test_html_colours_match_the_widget_scale():
    from qscope_widgets.html import cell_color

    assert cell_color(0.0, 0.0, 1.0) is None and cell_color(float("nan"), 0.0, 1.0) is None
    assert cell_color(1.0, 0.0, 1.0) == ("rgb(102,37,6)", "#fff")  # YlOrBr's darkest stop, white text
    assert cell_color(0.01, 0.0, 1.0)[1] == "#000"
    assert cell_color(-1.0, -1.0, 1.0, diverging=True)[0] == "rgb(33,102,172)"
    assert cell_color(0.01, -1.0, 1.0, diverging=True) is None  # |t| < 2% is unfilled, as in the widget


def test_attribution_html_sums_each_positions_attribution():
    """The renderer the Attribution result's _repr_html_ calls (duck-typed: the analysis layer sits above core)."""
    import pandas as pd

    from qscope_widgets.html import attribution_html

    class Result:  # the fields attribution_html reads, as qscope_widgets.attribution.Attribution has them
        tokens = ["The", " cat", " sat"]
        position = 2
        metric = 1.5
        method = "grad_x_act"

        class target:
            description = "logit of ' on'"

        @staticmethod
        def to_dataframe():
            return pd.DataFrame({"layer": [1, 1, 2, 2], "position": [0, 1, 1, 2], "token": ["The", " cat", " cat", " sat"],
                                 "feature": [4, 5, -1, 7], "label": ["", "", "reconstruction error", ""],
                                 "activation": [1.0, 2.0, 0.5, 3.0], "attribution": [0.25, -1.0, 0.5, 2.0],
                                 "kind": ["feature", "feature", "error", "feature"]})

    page = attribution_html(Result())
    strip = page.split('data-qscope="static-attribution"')[1]
    assert [float(v) for v in re.findall(r'data-value="([^"]+)"', strip)[:3]] == [0.25, -0.5, 2.0]
    nodes = page.split('data-qscope="static-nodes"')[1].split("</table>")[0]
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", r) for r in nodes.split("<tr>")[2:]]
    assert [r[6] for r in rows] == ["2", "-1", "0.5", "0.25"]  # the attribution column, by |attribution|
    assert "<script" not in page
