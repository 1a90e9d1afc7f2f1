"""The index's named records: a corpus chunk, the build settings, one context and one feature's card.

They replace tuples read as ``r[2]`` and loose dicts, so every field has a name and a type. ``FeatureCard.to_dict``
is the JSON shape the dashboard widget consumes (documented in :mod:`qscope_widgets.index.reader`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple


class Chunk(NamedTuple):
    """One window of at most ``chunk_len`` tokens of one document."""

    document: int  # index of the document in the corpus
    start: int  # token offset of the window inside the document
    token_ids: list[int]
    group: int | None  # group id (index into the sorted group names), None without groups


@dataclass(frozen=True)
class IndexSettings:
    """What determines an index besides the corpus and the model: equal settings + equal corpus = equal index.

    ``batch_size`` is part of it because it fixes which chunks share a forward (and so the exact float results of
    the model's maths); sharded builds keep the same batches, only spread over processes.
    """

    layers: tuple[int, ...]
    batch_size: int = 16
    chunk_len: int = 128
    top_n: int = 10
    context_left: int = 12
    context_right: int = 4
    max_tokens: int | None = None
    groups: tuple[str, ...] = ()
    sample_n: int = 24  # uniformly sampled contexts per feature (0: none); indexes written before it had none

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"], d["groups"] = list(self.layers), list(self.groups)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IndexSettings":
        kw = dict(d)
        kw["layers"] = tuple(int(n) for n in kw.get("layers", ()))
        kw["groups"] = tuple(str(g) for g in kw.get("groups", ()) or ())
        kw.setdefault("sample_n", 0)  # settings written before samples existed: the index has none
        return cls(**kw)


@dataclass(frozen=True)
class Context:
    """One context of a feature (a top-activating one, or one of its uniformly sampled firings): a token window
    around the activating token."""

    rank: int
    activation: float
    document: int
    position: int
    tokens: list[str]
    acts: list[float]  # the feature's activation on each token of the window
    center: int  # index of the activating token in ``tokens`` (acts[center] == activation)
    token_ids: list[int] = field(default_factory=list)  # the window's token ids ([] in indexes written before them)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FeatureCard:
    """Everything a dashboard shows about one feature. ``to_dict()`` gives the widgets' JSON shape."""

    layer: int
    feature: int
    label: str
    explanation: str
    density: float
    count: int
    mean_activation: float
    max_activation: float
    quantiles: dict[str, float]
    hist_edges: list[float]
    hist_counts: list[int]
    top_tokens: list[str]
    promoted: list[str]
    suppressed: list[str]
    groups: dict[str, float] = field(default_factory=dict)
    contexts: list[Context] = field(default_factory=list)
    samples: list[Context] = field(default_factory=list)  # a uniform sample of its firings, by activation
    label_score: float | None = None  # detection F1 of the scored label (None: not scored)
    scored_label: str | None = None
    label_weak: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_score": self.label_score, "scored_label": self.scored_label, "label_weak": self.label_weak,
            "layer": self.layer, "feature": self.feature, "label": self.label, "explanation": self.explanation,
            "density": self.density, "count": self.count, "mean_activation": self.mean_activation,
            "max_activation": self.max_activation, "quantiles": dict(self.quantiles),
            "hist": {"edges": list(self.hist_edges), "counts": list(self.hist_counts)},
            "top_tokens": list(self.top_tokens), "promoted": list(self.promoted),
            "suppressed": list(self.suppressed), "groups": dict(self.groups),
            "contexts": [c.to_dict() for c in self.contexts],
            "samples": [c.to_dict() for c in self.samples],
        }
