"""Constants the widgets and the front end share, loaded from ``contract.json`` (their single source: the JS
bundle imports the same file, so a mode or colour-by value added here exists on both sides at once)."""

from __future__ import annotations

import json
from pathlib import Path

CONTRACT_JSON = Path(__file__).resolve().parent / "contract.json"
_C = json.loads(CONTRACT_JSON.read_text(encoding="utf-8"))

COLOR_BY: tuple[str, ...] = tuple(_C["color_by"])            # what the heatmap colours tokens by
MODES: tuple[str, ...] = tuple(_C["modes"])                  # steering modes (== steering.MODES, pinned by a test)
CHART_COLUMNS: tuple[str, ...] = tuple(_C["chart_columns"])  # columns of the layer chart, in order
STEER_POSITIONS: tuple[str, ...] = tuple(_C["steer_positions"])  # where the explorer's edits apply
DIFF_UNFILLED_FRACTION: float = float(_C["diff_unfilled_fraction"])  # |diff| below this share of max: unfilled
SLIDER_POSITIONS: int = int(_C["slider_positions"])          # a slider's range holds about this many steps
MAX_CONTINUATION_TOKENS: int = int(_C["max_continuation_tokens"])
SIDEBAR_ROWS: int = int(_C["sidebar_rows"])
TOP_NEXT: int = int(_C["top_next"])
