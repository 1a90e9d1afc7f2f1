"""Feature index: scan a corpus once, then browse any feature's statistics, contexts and label instantly."""

from .builder import build_index
from .corpus import CorpusReport
from .store import FeatureIndex, search_by_example

__all__ = ["build_index", "FeatureIndex", "CorpusReport", "search_by_example"]
