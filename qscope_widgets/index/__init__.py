"""Feature index: scan a corpus once, then browse any feature's statistics, contexts and label instantly.

    idx = build_index(scope, corpus, out_dir="my_index", layers=[3], max_tokens=1_000_000)   # or scope.index(...)
    idx = FeatureIndex.load("my_index", scope=scope)
    idx.features(3)            # DataFrame, one row per feature: density, max / quantiles, histogram, label, ...
    idx.feature(3, 117)        # dict for the dashboard (keys documented in store.py)
    idx.contexts(3, 117)       # DataFrame of its top contexts
    idx.search("God")          # by label / explanation / top tokens; where="contexts" searches context text
    idx.attach_labels("neuronpedia_export.json", layer=3)
    search_by_example(scope, "In the beginning", 3)   # which features fire on this phrase
"""

from .accumulator import FeatureAccumulator
from .builder import build_index
from .corpus import CorpusReport
from .store import FeatureIndex, search_by_example

__all__ = ["build_index", "FeatureIndex", "FeatureAccumulator", "CorpusReport", "search_by_example"]
