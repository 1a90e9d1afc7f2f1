"""Reading explanations from elsewhere (a Neuronpedia export, a CSV, a dict) into a table of feature id -> text."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import QScopeError

if TYPE_CHECKING:
    import pandas as pd


def read_labels(labels: Any) -> "pd.DataFrame":
    """A table of labels from a DataFrame, Series, dict, list of records or a CSV / JSON / JSONL / parquet file;
    an unreadable, empty or binary file is a :class:`QScopeError` naming it."""
    import pandas as pd

    if isinstance(labels, (str, os.PathLike)):
        p = Path(labels)
        if not p.is_file():
            raise QScopeError(f"no labels file at {p}")
        if p.stat().st_size == 0:
            raise QScopeError(f"the labels file {p} is empty")
        try:
            df = _read_label_file(p)
        except QScopeError:
            raise
        except Exception as exc:  # parsers raise many types (ArrowInvalid, ParserError, UnicodeDecodeError, ...)
            raise QScopeError(f"cannot read labels from {p}: {type(exc).__name__}: {exc}"[:500]) from None
        if not isinstance(df, pd.DataFrame) or df.empty:
            raise QScopeError(f"the labels file {p} holds no label rows")
        return df
    try:
        return _as_frame(labels)
    except (TypeError, ValueError) as exc:
        raise QScopeError(f"cannot read labels from a {type(labels).__name__}: {exc}") from None


def _as_frame(labels: Any) -> "pd.DataFrame":
    import pandas as pd

    if isinstance(labels, pd.DataFrame):
        return labels
    if isinstance(labels, pd.Series):
        return pd.DataFrame({"feature": labels.index, "explanation": labels.values})
    if isinstance(labels, dict):
        return pd.DataFrame({"feature": list(labels), "explanation": list(labels.values())})
    return pd.DataFrame(labels)


def _read_label_file(p: Path) -> "pd.DataFrame":
    import pandas as pd

    suf = p.suffix.lower()
    if suf == ".parquet":
        return pd.read_parquet(p)
    if suf == ".jsonl":
        return pd.read_json(p, lines=True, dtype=False)
    if suf == ".json":
        data = json.loads(p.read_text())
        if isinstance(data, dict) and not any(isinstance(v, (list, dict)) for v in data.values()):
            return pd.DataFrame({"feature": list(data), "explanation": list(data.values())})
        if isinstance(data, dict):  # {"explanations": [...]} and similar wrappers
            data = next((v for v in data.values() if isinstance(v, list)), [])
        if not isinstance(data, list):
            raise QScopeError(f"the labels file {p} holds a {type(data).__name__}, not a list of label records")
        return pd.DataFrame(data)
    with p.open("rb") as fh:
        if b"\x00" in fh.read(8192):
            raise QScopeError(f"the labels file {p} is binary, not CSV text (use .parquet / .json / .jsonl "
                              "for other formats)")
    return pd.read_csv(p)


def pick_column(df: "pd.DataFrame", names: tuple[str, ...], what: str) -> str:
    lower = {c.lower(): c for c in df.columns}
    for n in names:
        if n.lower() in lower:
            return lower[n.lower()]
    raise QScopeError(f"cannot tell which column holds the {what} (looked for {list(names)}); columns: "
                      f"{list(df.columns)}: pass feature_column= / column=")
