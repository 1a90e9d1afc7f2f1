"""Compatibility names: the index's reader, writer and search moved to :mod:`.reader`, :mod:`.writer`,
:mod:`.search` and :mod:`.files` (this module imports from them and nothing imports it back)."""

from .files import FORMAT
from .reader import FeatureIndex
from .search import search_by_example
from .writer import CONTEXT_ROW_GROUP, write_layer

__all__ = ["FORMAT", "FeatureIndex", "search_by_example", "write_layer", "CONTEXT_ROW_GROUP"]
