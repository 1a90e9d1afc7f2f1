"""Steering edits: what to change in the residual stream, validated before any hook is installed.

Modes, for a feature ``f`` with decoder direction ``d = W_dec[:, f]`` at layer ``n``'s output ``h``:

* ``add``: ``h += strength * d`` (the release's steering; presets 5 / 20 / 100 in the official app).
* ``clamp``: set the feature's code to ``strength``: ``h += (strength - z_f(h)) * d`` where ``z_f`` is the SAE code.
* ``ablate``: remove a fraction ``strength`` (default 1: all) of the feature: ``h -= strength * z_f(h) * d``.

Edits at the same layer are computed from the same unedited ``h`` and summed, so their order never matters.
Zero-effect edits (``add``/``ablate`` with strength 0, disabled edits) are dropped, so a strength-0 run is
bit-identical to an unsteered one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable, Iterator, Literal, Sequence, Union

from .errors import SteeringError
from .validate import as_bool, as_float, as_int

Mode = Literal["add", "clamp", "ablate"]
MODES: tuple[str, ...] = ("add", "clamp", "ablate")
Positions = Union[None, tuple[int, ...], Literal["generated"]]


@dataclass(frozen=True)
class SteeringEdit:
    """One edit of one feature at one layer.

    Args:
        layer: decoder layer whose output is edited (0-based, as Qwen-Scope's ``layer{n}``).
        feature: feature id in that layer's SAE.
        strength: ``add``: multiple of ``W_dec[:, f]``; ``clamp``: the target code; ``ablate``: fraction removed.
        mode: ``"add"``, ``"clamp"`` or ``"ablate"``.
        positions: ``None`` for every token; a sequence of token positions (negative counts from the end of the
            prompt); or ``"generated"`` for newly generated tokens only.
        enabled: a switched-off edit stays in a list (the widget's on/off toggle) but does nothing.
    """

    layer: int
    feature: int
    strength: float = 1.0
    mode: Mode = "add"
    positions: Positions = None
    enabled: bool = True

    def __post_init__(self) -> None:
        for name in ("layer", "feature"):
            object.__setattr__(self, name, as_int(getattr(self, name), f"steering {name}", error=SteeringError, min=0))
        s = as_float(self.strength, f"steering strength (layer {self.layer}, feature {self.feature})",
                     error=SteeringError)
        object.__setattr__(self, "strength", s)
        if not isinstance(self.mode, str) or self.mode not in MODES:
            raise SteeringError(f"unknown steering mode {self.mode!r}; expected one of {', '.join(MODES)}")
        object.__setattr__(self, "enabled", as_bool(self.enabled, "steering enabled", error=SteeringError))
        pos = self.positions
        if pos is not None and pos != "generated":
            if isinstance(pos, (str, bytes, dict)) or not isinstance(pos, Iterable):
                raise SteeringError(f"positions must be None, 'generated' or a list of ints, got {pos!r}")
            tup = tuple(as_int(p, "steering position", error=SteeringError) for p in pos)  # type: ignore
            if not tup:
                raise SteeringError("positions is an empty list: pass None to steer every token")
            object.__setattr__(self, "positions", tup)

    @property
    def is_noop(self) -> bool:
        """True when applying the edit cannot change anything (dropped before hooking)."""
        return not self.enabled or (self.mode in ("add", "ablate") and self.strength == 0.0)

    def with_strength(self, strength: float) -> "SteeringEdit":
        return replace(self, strength=strength)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if isinstance(d["positions"], tuple):
            d["positions"] = list(d["positions"])
        return d


SteeringLike = Union[None, SteeringEdit, dict, "Steering", Sequence[Union[SteeringEdit, dict]]]


def as_edits(steering: SteeringLike) -> tuple[SteeringEdit, ...]:
    """Normalise whatever a user passes as ``steering=`` into a tuple of validated edits."""
    if steering is None:
        return ()
    if isinstance(steering, SteeringEdit):
        return (steering,)
    if isinstance(steering, dict):
        return (_edit_from_dict(steering),)
    if isinstance(steering, Steering):
        return tuple(steering)
    if isinstance(steering, (str, bytes)) or not isinstance(steering, Iterable):
        raise SteeringError(f"steering must be a SteeringEdit, a dict or a list of them, got {type(steering).__name__}")
    out = []
    for e in steering:
        if isinstance(e, SteeringEdit):
            out.append(e)
        elif isinstance(e, dict):
            out.append(_edit_from_dict(e))
        else:
            raise SteeringError(f"a steering entry must be a SteeringEdit or a dict, got {type(e).__name__}")
    return tuple(out)


def _edit_from_dict(d: dict) -> SteeringEdit:
    try:
        return SteeringEdit(**d)
    except TypeError as exc:
        raise SteeringError(f"bad steering dict {d!r}: {exc}") from None


class Steering:
    """An ordered, editable list of :class:`SteeringEdit` (what the widgets' sliders edit)."""

    def __init__(self, edits: SteeringLike = None):
        self._edits: list[SteeringEdit] = list(as_edits(edits))

    def add(self, layer: int, feature: int, strength: float = 1.0, mode: Mode = "add",
            positions: Positions = None) -> SteeringEdit:
        edit = SteeringEdit(layer, feature, strength, mode, positions)
        self._edits.append(edit)
        return edit

    def remove(self, layer: int, feature: int) -> None:
        self._edits = [e for e in self._edits if (e.layer, e.feature) != (layer, feature)]

    def clear(self) -> None:
        self._edits.clear()

    def __iter__(self) -> Iterator[SteeringEdit]:
        return iter(self._edits)

    def __len__(self) -> int:
        return len(self._edits)

    def __getitem__(self, i: int) -> SteeringEdit:
        return self._edits[i]

    def __repr__(self) -> str:
        return f"Steering({self._edits!r})"

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([e.to_dict() for e in self._edits],
                            columns=["layer", "feature", "strength", "mode", "positions", "enabled"])
