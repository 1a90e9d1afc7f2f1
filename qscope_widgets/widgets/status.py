"""How an exception reads in a widget's status line (one place, used by every widget)."""

from __future__ import annotations


def error_text(exc: BaseException) -> str:
    """``"TypeName: message"``; a ``KeyError``'s bare key, and out-of-memory with what to try instead."""
    msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if type(exc).__name__ == "OutOfMemoryError":
        msg = f"out of GPU memory ({msg.splitlines()[0] if msg else ''}); try a shorter prompt or fewer layers"
    return f"{type(exc).__name__}: {msg}"
