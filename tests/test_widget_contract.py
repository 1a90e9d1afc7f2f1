"""The Python-JS contract is checked, not only written (issue 11): every synced trait of every view (name and
type) is in docs/widget-contract.md and in the typed JS model js/src/model.d.ts, and the shared constants have
one source."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anywidget
import pytest
import traitlets as t

from qscope_widgets.steering import MODES
from qscope_widgets.widgets import VIEWS, FeatureDashboard
from qscope_widgets.widgets.constants import CHART_COLUMNS, COLOR_BY, CONTRACT_JSON
from qscope_widgets.widgets.panels import PANELS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "widget-contract.md"
MODEL_DTS = ROOT / "js" / "src" / "model.d.ts"
INTERNAL = set(anywidget.AnyWidget.class_trait_names(sync=True))  # ipywidgets' own (_model_name, layout, ...)
TYPES = {t.Unicode: "str", t.Int: "int", t.Float: "float", t.Bool: "bool", t.Bytes: "bytes", t.List: "list",
         t.Dict: "dict"}


def synced(cls) -> dict[str, str]:
    out = {}
    for name, trait in cls.class_traits(sync=True).items():
        if name in INTERNAL and name != "_view":
            continue
        out[name] = next(v for k, v in TYPES.items() if isinstance(trait, k))
    return out


def documented() -> dict[str, set[str]]:
    """name -> the base types the doc's tables give it (`list[str]` -> `list`)."""
    rows: dict[str, set[str]] = {}
    for m in re.finditer(r"^\| `([A-Za-z_]+)` \| ([a-z]+)(?:\[[^|]*\])? \|", DOC.read_text(), re.M):
        rows.setdefault(m.group(1), set()).add(m.group(2))
    return rows


ALL_VIEWS = [*VIEWS.values(), FeatureDashboard]


@pytest.mark.parametrize("cls", ALL_VIEWS, ids=lambda c: c.__name__)
def test_every_synced_trait_is_documented_with_its_type(cls):
    doc = documented()
    for name, kind in synced(cls).items():
        assert name in doc, f"{cls.__name__}.{name} is synced but not in docs/widget-contract.md"
        assert doc[name] == {kind}, f"{cls.__name__}.{name} is {kind} in Python, {doc[name]} in the doc"


def test_every_documented_trait_exists():
    everywhere = set().union(*(synced(c) for c in ALL_VIEWS))
    assert set(documented()) - everywhere == set()


def test_the_typed_js_model_has_exactly_the_synced_traits():
    body = MODEL_DTS.read_text().split("export interface Traits {", 1)[1].split("\n}", 1)[0]
    js = set(re.findall(r"^  ([A-Za-z_]+)\??:", body, re.M))
    py = set().union(*(synced(c) for c in ALL_VIEWS))
    assert js == py, f"only in JS: {sorted(js - py)}; only in Python: {sorted(py - js)}"


def test_views_table_matches_the_view_classes():
    text = DOC.read_text()
    for view, cls in VIEWS.items():
        m = re.search(rf"^\| `{view}` \| `{cls.__name__}` \| ([^|]+) \|", text, re.M)
        assert m, f"view {view} is missing from the Views table"
        assert [p.strip() for p in m.group(1).split(",")] == list(cls.panels)


def test_each_panel_has_a_doc_section_listing_its_traits():
    text = DOC.read_text()
    for name, panel in PANELS.items():
        if name.startswith("test_"):
            continue
        m = re.search(rf"^## Panel `{name}`\n(.*?)(?=^## )", text, re.M | re.S)
        assert m, f"panel {name} has no section"
        listed = set(re.findall(r"^\| `([A-Za-z_]+)` \|", m.group(1), re.M))
        assert listed == set(panel.inputs) | set(panel.outputs), name


def test_shared_constants_have_one_source():
    c = json.loads(CONTRACT_JSON.read_text())
    assert tuple(c["modes"]) == MODES  # the core's modes and the front end's agree
    assert tuple(c["color_by"]) == COLOR_BY and tuple(c["chart_columns"]) == CHART_COLUMNS
    js = (ROOT / "js" / "src" / "constants.js").read_text()
    assert "qscope_widgets/widgets/contract.json" in js
    for f in (ROOT / "js" / "src").glob("*.js"):  # no second copy of a shared list in the front end
        src = f.read_text()
        assert '["add", "clamp", "ablate"]' not in src and '"feature_act", name' not in src, f.name


def test_the_front_ends_default_panels_match_the_python_views():
    """Saved state from before ``_panels`` draws DEFAULT_PANELS (js/src/panels.js): each built-in view listed
    there must draw exactly the panels its Python class declares."""
    src = (ROOT / "js" / "src" / "panels.js").read_text()
    body = src.split("export const DEFAULT_PANELS", 1)[1].split("});", 1)[0]
    listed = {m.group(1): re.findall(r'"([a-z_]+)"', m.group(2))
              for m in re.finditer(r"([a-z_]+): \[([^\]]*)\]", body)}
    assert {"explorer", "steering"} <= set(listed)
    for view, panels in listed.items():
        assert panels == list(VIEWS[view].panels), view
