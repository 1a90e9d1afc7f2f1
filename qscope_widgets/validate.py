"""Argument checks shared by every public entry point: one place decides what counts as an int, a bool, a number.

Why one module: ad-hoc ``int(x)`` / ``isinstance(x, int)`` checks drift apart. ``int(1.5)`` silently truncates,
``isinstance(True, int)`` is true, ``np.int64(3)`` is not an ``int``, and ``float("inf")`` reaches ``int()`` as an
``OverflowError``. Each helper here accepts exactly the values it documents (Python and numpy integers, and
integer-valued only where an int is wanted) and otherwise raises the caller's :class:`QScopeError` subclass with a
message that names the parameter and the bad value.

Public on purpose: the index, widgets and analysis modules use the same helpers.
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import Any, Callable

from .errors import QScopeError

ErrorType = type[QScopeError]


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` of a bad value, cut so a 2-million-character string never lands whole in a message."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 12] + f"... ({len(r)} chars)"


def is_bool(value: Any) -> bool:
    """A Python or numpy bool."""
    if isinstance(value, bool):
        return True
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.bool_)


def is_int_like(value: Any) -> bool:
    """True for Python and numpy integers (not bools, not floats: ``1.0`` is refused where an int is wanted)."""
    if is_bool(value):
        return False
    return isinstance(value, numbers.Integral) or (
        hasattr(value, "__index__") and not isinstance(value, (float, complex, str, bytes)) and _index_ok(value))


def _index_ok(value: Any) -> bool:
    try:
        value.__index__()
        return getattr(value, "ndim", 0) == 0  # a 1-element array has __index__ only when it is 0-d
    except Exception:
        return False


def as_int(value: Any, name: str, *, error: ErrorType = QScopeError, min: int | None = None,
           max: int | None = None) -> int:
    """``value`` as a Python int: ints and numpy integers only (no bool, no float, no str), within [min, max]."""
    if not is_int_like(value):
        raise error(f"{name} must be an int, got {_short(value)} ({type(value).__name__})")
    v = int(value.__index__())
    if min is not None and v < min:
        raise error(f"{name} must be >= {min}, got {v}")
    if max is not None and v > max:
        raise error(f"{name} must be <= {max}, got {v}")
    return v


def as_optional_int(value: Any, name: str, **kw: Any) -> int | None:
    return None if value is None else as_int(value, name, **kw)


def as_bool(value: Any, name: str, *, error: ErrorType = QScopeError) -> bool:
    """A real bool (Python or numpy). ``"no"``, ``0``, ``None`` are refused: a truthy string would mean yes."""
    if is_bool(value):
        return bool(value)
    raise error(f"{name} must be True or False, got {_short(value)} ({type(value).__name__})")


def as_float(value: Any, name: str, *, error: ErrorType = QScopeError, finite: bool = True,
             min: float | None = None, max: float | None = None, min_open: bool = False) -> float:
    """A real number (int, float or numpy scalar; not bool, not str) as a float, finite unless told otherwise.

    ``min_open``: the lower bound is exclusive (``temperature`` must be > 0 where 0 means greedy elsewhere).
    """
    if is_bool(value) or not isinstance(value, numbers.Real):
        raise error(f"{name} must be a number, got {_short(value)} ({type(value).__name__})")
    try:
        v = float(value)
    except (OverflowError, ValueError, TypeError):
        raise error(f"{name} must be a representable number, got {_short(value)}") from None
    if math.isnan(v) or (finite and math.isinf(v)):
        raise error(f"{name} must be finite, got {_short(value)}")
    if min is not None and (v < min or (min_open and v == min)):
        raise error(f"{name} must be {'>' if min_open else '>='} {min}, got {_short(value)}")
    if max is not None and v > max:
        raise error(f"{name} must be <= {max}, got {_short(value)}")
    return v


def as_str(value: Any, name: str, *, error: ErrorType = QScopeError, max_chars: int | None = None,
           allow_empty: bool = True) -> str:
    """A str that is valid UTF-8 (no lone surrogates: the tokenizer would raise deep inside Rust) and not absurdly
    long. The length is checked first, in O(1), so a huge string is refused before any work on it."""
    if not isinstance(value, str):
        raise error(f"{name} must be a str, got {type(value).__name__}")
    if max_chars is not None and len(value) > max_chars:
        raise error(f"{name} has {len(value):,} characters, more than the {max_chars:,} accepted")
    if not allow_empty and value == "":
        raise error(f"{name} is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise error(f"{name} is not valid text: character {exc.start} is a lone surrogate "
                    f"{_short(value[exc.start])}; decode your bytes with errors='replace'") from None
    return value


def as_callable(value: Any, name: str, *, error: ErrorType = QScopeError, optional: bool = True) -> Any:
    if value is None and optional:
        return None
    if not callable(value):
        raise error(f"{name} must be callable{' or None' if optional else ''}, got {_short(value)}")
    return value


def as_int_list(value: Any, name: str, *, error: ErrorType = QScopeError, **kw: Any) -> list[int]:
    """One int or an iterable of ints (each checked with :func:`as_int`)."""
    if is_int_like(value):
        return [as_int(value, name, error=error, **kw)]
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise error(f"{name} must be an int or a list of ints, got {_short(value)} ({type(value).__name__})")
    return [as_int(v, f"{name} entry", error=error, **kw) for v in value]


def http_url_template(value: Any, name: str = "feature_url", *, error: ErrorType = QScopeError) -> str:
    """A URL template that opens in a browser tab: http(s) only (``javascript:``/``data:`` would run in the page)."""
    s = as_str(value, name, error=error, max_chars=2048)
    head = s.strip().lower()
    if not (head.startswith("http://") or head.startswith("https://")):
        raise error(f"{name} must be an http(s) URL template, got {_short(value)}")
    return s


def format_feature_url(template: Any, layer: int, feature: int, *, error: ErrorType = QScopeError) -> str:
    """``template`` with ``{layer}`` and ``{feature}`` replaced (as the page does it); "" for an empty template."""
    if template in ("", None):
        return ""
    s = http_url_template(template, error=error)
    return s.replace("{layer}", str(layer)).replace("{feature}", str(feature))


def check(cond: bool, error: ErrorType, message: Callable[[], str] | str) -> None:
    """Raise ``error(message)`` unless ``cond``; ``message`` may be a thunk so it is built only on failure."""
    if not cond:
        raise error(message() if callable(message) else message)
