"""Exported pages in a real headless Chromium, from file://, with every request that is not the file itself
blocked: the heatmap shows the trace's values, hover shows the live widget's top features, saved layers / tokens /
features switch without a kernel, and what needs the model says so. Then a notebook through nbconvert."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jupyterlab_harness import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
PROMPT = "In the beginning God created the heaven and the earth."
VIEW = '.qscope[data-qscope-view="explorer"]'


def require_browser() -> None:
    why = None
    if not Path(CHROMIUM).exists():
        why = f"{CHROMIUM} is missing"
    elif not (ROOT / "qscope_widgets" / "static" / "static.js").exists():
        why = "the front end is not built (cd js && npm ci && npm run build)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            why = "playwright is not installed"
    if why and os.environ.get("QSCOPE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"the browser test cannot run: {why}")
    if why:
        pytest.skip(why)
    ARTIFACTS.mkdir(exist_ok=True)


class OfflinePage:
    """A Chromium page that may read file:// (and data:/blob:) and nothing else."""

    def __init__(self, page):
        self.page, self.blocked, self.errors = page, [], []
        page.route("**/*", self._route)
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _route(self, route):
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def check(self):
        assert not self.blocked, f"the page asked another host: {self.blocked[:5]}"
        assert not self.errors, f"console errors: {self.errors[:5]}"


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def drawn(page) -> list[float]:
    return page.eval_on_selector_all(f"{VIEW} [data-qscope='heatmap'] .qscope-token",
                                     "els => els.map(e => Number(e.dataset.value))")


def tooltip_rows(page, i: int) -> list[tuple[int, str]]:
    page.locator(f"{VIEW} .qscope-token[data-index='{i}']").hover()
    page.wait_for_selector(f"{VIEW} [data-qscope='tooltip']:not([hidden])")
    return [(int(a.lstrip("#")), b) for a, b in page.eval_on_selector_all(
        f"{VIEW} [data-qscope='tooltip'] tr", "rows => rows.map(r => [r.cells[0].textContent, r.cells[2].textContent])")]


def live_top(ex, i: int) -> list[tuple[int, str]]:
    """What the live widget's tooltip lists for token i: its first 8 non-zero codes, formatted as JS does."""
    from qscope_widgets.html import fmt

    k = ex.k
    ids = np.frombuffer(ex.codes_ids, "<i4")[i * k:(i + 1) * k]
    vals = np.frombuffer(ex.codes_values, "<f4")[i * k:(i + 1) * k]
    return [(int(f), fmt(float(v))) for f, v in zip(ids, vals) if v != 0][:8]


def test_exported_explorer_works_from_file_with_no_network(tmp_path, browser, demo):
    layers = [demo.sae_layers[0], demo.sae_layers[-1]]
    ex = demo.explore(PROMPT)
    try:
        path = ex.to_html(tmp_path / "explorer.html", layers=layers)
        home = ex.layer
        trace = demo.run(PROMPT, layers=[home, *layers])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        net = OfflinePage(page)
        try:
            page.goto(path.as_uri())
            page.wait_for_selector("[data-qscope-static][data-ready='true']", timeout=20_000)
            # the heatmap's values are the trace's (strongest feature per token at the layer in view)
            np.testing.assert_array_equal(np.asarray(drawn(page), np.float32), trace.layers[home].values[:, 0].numpy())
            # hover: the same top features as the live widget
            assert tooltip_rows(page, 4) == live_top(ex, 4)

            # select a token: the sidebar is that token's, as the live widget's
            page.locator(f"{VIEW} .qscope-token[data-index='4']").click()
            ex.selected_token = 4
            ex.wait()
            page.wait_for_function(f"() => document.querySelector('{VIEW} .qscope-sidebar-title').textContent"
                                   f" === {json.dumps(ex.sidebar_title)}")
            rows = page.eval_on_selector_all(f"{VIEW} [data-qscope='feature-row']",
                                             "els => els.map(e => Number(e.dataset.feature))")
            assert rows == [r["feature"] for r in ex.sidebar]
            # and the next-token panel predicts from that token, as the live one does
            nxt = page.eval_on_selector_all(f"{VIEW} [data-qscope='next-tokens'] .qscope-next-row",
                                            "els => els.map(e => [e.dataset.token, Number(e.dataset.prob)])")
            assert nxt[:len(ex.next_tokens["baseline"])] == [[t, p] for t, p in ex.next_tokens["baseline"]]

            # select a feature from that sidebar: the heatmap colours by it
            f = rows[1]
            page.locator(f"{VIEW} [data-qscope='feature-row'][data-feature='{f}']").click()
            page.wait_for_function(f"() => document.querySelector('{VIEW} [data-qscope=\"color-by\"]').value === 'feature'")
            np.testing.assert_array_equal(np.asarray(drawn(page), np.float32),
                                          trace.layers[home].activation_of(f).numpy())
            assert net.blocked == []

            # switch to another saved layer with the scrubber: values, tooltip as the live widget at that layer
            other = layers[0]
            page.locator(f"{VIEW} [data-qscope='layer-cell'][data-layer='{other}']").click()
            page.wait_for_function(f"() => document.querySelector('{VIEW} [data-qscope=\"layer\"]').value === '{other}'")
            np.testing.assert_array_equal(np.asarray(drawn(page), np.float32), trace.layers[other].values[:, 0].numpy())
            ex.layer = other
            ex.wait()
            assert tooltip_rows(page, 2) == live_top(ex, 2)
            assert page.locator(f"{VIEW} [data-qscope='kernel-note']").is_hidden()

            # a layer that was not saved: put back, with a note naming the saved ones
            unsaved = next(n for n in demo.sae_layers if n not in layers and n != home)
            page.locator(f"{VIEW} [data-qscope='layer-cell'][data-layer='{unsaved}']").click()
            note = page.locator("[data-qscope='kernel-note']")
            note.wait_for(state="visible")
            assert f"layer = {unsaved} is not in this snapshot's saved data" in note.inner_text()
            assert page.eval_on_selector(f"{VIEW} [data-qscope='layer']", "e => e.value") == str(other)

            # kernel-needing actions: a new prompt, pinning a feature
            page.locator(f"{VIEW} [data-qscope='prompt']").fill("A different prompt")
            page.locator(f"{VIEW} [data-qscope='prompt']").press("Enter")
            page.wait_for_function("() => document.querySelector(\"[data-qscope='kernel-note']\").textContent"
                                   ".includes('Running a new prompt needs a live kernel')")
            page.locator(f"{VIEW} [data-qscope='pin']").first.click()
            page.wait_for_function("() => document.querySelector(\"[data-qscope='kernel-note']\").textContent"
                                   ".includes('“pin” needs a live kernel')")
            np.testing.assert_array_equal(np.asarray(drawn(page), np.float32), trace.layers[other].values[:, 0].numpy())
            page.screenshot(path=str(ARTIFACTS / "export-explorer.png"), full_page=True)
            net.check()
        finally:
            page.close()
    finally:
        ex.close()


def test_exported_dashboard_renders_offline(tmp_path, browser, demo):
    dash = demo.feature(demo.sae_layers[0], 3)
    try:
        path = dash.to_html(tmp_path / "dash.html")
        page = browser.new_page()
        net = OfflinePage(page)
        try:
            page.goto(path.as_uri())
            page.wait_for_selector("[data-qscope-static][data-ready='true']", timeout=20_000)
            assert page.locator("[data-qscope='feature-dashboard']").count() == 1
            # the top contexts, then the sampled ones grouped by activation band (the demo index keeps samples)
            banded = sum(len(b["contexts"]) for b in dash.data.get("bands", []))
            assert banded > 0
            assert page.locator("[data-qscope='context']").count() == len(dash.data.get("contexts", [])) + banded
            net.check()
        finally:
            page.close()
    finally:
        dash.close()


NOTEBOOK_CELLS = [
    "from qscope_widgets import Scope\nscope = Scope.demo()",
    f"ex = scope.explore({PROMPT!r})\nex",
    f"scope.run({PROMPT!r}, layers=[ex.layer])",
]


def rich_output(cell) -> dict:
    """The cell's display data (its other outputs are the model's stderr warnings)."""
    return next(o["data"] for o in cell.outputs if "data" in o)


def executed_notebook(tmp_path: Path, store_widget_state: bool) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = tmp_path / f"shared_{int(store_widget_state)}.ipynb"
    nbformat.write(nb, src)
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
                    f"--ExecutePreprocessor.store_widget_state={store_widget_state}", str(src)],
                   check=True, env=ENV, capture_output=True, timeout=300)
    return src


ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def check_notebook_page(browser, html: Path, demo, shot: str, allowed=()) -> None:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    net = OfflinePage(page)
    try:
        page.goto(html.as_uri())
        snap = page.locator("[data-qscope='static-explorer']")
        snap.wait_for(timeout=20_000)
        values = snap.locator(".qscope-token").evaluate_all("els => els.map(e => Number(e.dataset.value))")
        layer = demo.sae_layers[len(demo.sae_layers) // 2]  # the explorer's default layer
        want = demo.run(PROMPT, layers=[layer]).layers[layer].values[:, 0].numpy()
        np.testing.assert_array_equal(np.asarray(values, np.float32), want)
        assert snap.locator(".qscope-token").first.is_visible()
        assert page.locator("[data-qscope='static-matrix']").count() == 1  # the trace's own static heatmap
        page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
        if allowed:  # nbconvert's own scripts: blocked, and each logs one failed load
            expected = [u for u in net.blocked if u.startswith(allowed)]
            net.blocked = [u for u in net.blocked if not u.startswith(allowed)]
            fails = [e for e in net.errors if e == "Failed to load resource: net::ERR_FAILED"]
            assert len(fails) <= len(expected)
            net.errors = [e for e in net.errors if e not in fails]
        net.check()
    finally:
        page.close()


def test_nbconvert_html_of_a_notebook_saved_without_widget_state_shows_the_snapshot(tmp_path, browser, demo):
    """JupyterLab's default (widget state not saved): plain ``jupyter nbconvert --to html`` shows the snapshot.
    nbconvert's own page asks cdnjs for require.js and MathJax (blocked here); the snapshot needs neither."""
    src = executed_notebook(tmp_path, store_widget_state=False)
    out = rich_output(__import__("nbformat").read(src, as_version=4).cells[1])
    assert "application/vnd.jupyter.widget-view+json" in out and 'data-qscope="static-explorer"' in out["text/html"]
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(src)], check=True, env=ENV,
                   capture_output=True, timeout=300)
    check_notebook_page(browser, src.with_suffix(".html"), demo, "export-nbconvert.png",
                        allowed=("https://cdnjs.cloudflare.com/",))


def test_notebook_with_saved_widget_state_converts_offline_with_our_command(tmp_path, browser, demo):
    """With widget state saved (``nbconvert --execute``'s default), nbconvert prefers the widget view and needs a
    CDN; ``python -m qscope_widgets.export`` makes a page that shows the snapshots and asks no other host."""
    import nbformat

    src = executed_notebook(tmp_path, store_widget_state=True)
    assert nbformat.read(src, as_version=4).metadata.get("widgets"), "nbconvert did not save the widget state"
    html = tmp_path / "shared.html"
    subprocess.run([sys.executable, "-m", "qscope_widgets.widgets.export", str(src), "-o", str(html)], check=True, env=ENV,
                   capture_output=True, timeout=300)
    check_notebook_page(browser, html, demo, "export-notebook-offline.png")


def test_untrusted_saved_notebook_in_jupyterlab_shows_the_snapshot_not_an_error(tmp_path, browser, demo):
    """A notebook someone else saved (not trusted here, no widget state: JupyterLab's default) re-opened in
    JupyterLab 4: the widget output falls back to the sanitised static snapshot, with its colours."""
    import shutil

    from jupyterlab_harness import jupyterlab

    (tmp_path / "nb").mkdir()
    src = executed_notebook(tmp_path / "nb", store_widget_state=False)
    with jupyterlab(tmp_path / "lab", []) as lab:
        shutil.copy(src, lab.root / src.name)  # copied, not `jupyter trust`ed: untrusted, as a download is
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        try:
            page.goto(f"{lab.url}/lab/tree/{src.name}")
            snap = page.locator(".jp-OutputArea-output .qscope-static").first
            snap.wait_for(timeout=90_000)
            assert "qscope explorer" in snap.inner_text()
            assert page.locator("text=Error displaying widget").count() == 0
            tokens = snap.locator(".qscope-token")
            assert tokens.count() == len(demo.run(PROMPT).tokens)
            fills = tokens.evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)")
            assert any(f not in ("rgba(0, 0, 0, 0)", "transparent") for f in fills), "the sanitiser dropped the colours"
            page.screenshot(path=str(ARTIFACTS / "export-untrusted-jupyterlab.png"), full_page=True)
        finally:
            page.close()
