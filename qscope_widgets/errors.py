"""Exception types.

Every bad input raises a subclass of :class:`QScopeError`. They subclass ``ValueError`` (or ``KeyError`` /
``IndexError`` where that is what the caller would naturally catch) so generic notebook code keeps working, while
the message always names the offending value and what would have been valid. Raising never leaves a hook
installed: see :mod:`qscope_widgets.hooks`.
"""

from __future__ import annotations


class QScopeError(ValueError):
    """Base class of every error this package raises on purpose."""


class PromptError(QScopeError):
    """The prompt is empty, not text or token ids, or longer than the model's context."""


class UnknownLayerError(QScopeError, KeyError):
    """A layer index outside the model, or a layer for which no SAE is available."""

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class FeatureIndexError(QScopeError, IndexError):
    """A feature id outside ``0 .. d_sae - 1``."""


class SteeringError(QScopeError):
    """A steering edit that cannot be applied: bad mode, NaN/inf strength, bad positions."""


class SAEFormatError(QScopeError):
    """An SAE file that is missing, truncated, corrupt, untrusted (a pickle that would run code) or of unknown layout."""


class SAEShapeError(SAEFormatError):
    """An SAE whose tensor shapes disagree with each other or with the model's ``d_model``."""
