"""Feature index: scan a corpus once, then browse any feature's statistics, contexts and label instantly.

    idx = build_index(scope, corpus, out_dir="my_index", layers=[3], max_tokens=1_000_000)   # or scope.index(...)
    idx = FeatureIndex.load("my_index", scope=scope)
    idx.features(3)            # DataFrame, one row per feature: density, max / quantiles, histogram, label, ...
    idx.feature(3, 117)        # dict for the dashboard (idx.card(3, 117): the same as a typed FeatureCard)
    idx.contexts(3, 117)       # DataFrame of its top contexts
    idx.contexts(3, 117, kind="sample")   # a uniform random sample of its firings (every activation range)
    idx.search("God")          # by label / explanation / top tokens; where="contexts" searches context text
    idx.attach_labels("neuronpedia_export.json", layer=3)
    search_by_example(scope, "In the beginning", 3)   # which features fire on this phrase

Across processes (torch.distributed; see docs/distributed-index.md)::

    torchrun --nproc-per-node 4 -m qscope_widgets.index build --model ... --corpus corpus.jsonl --out my_index
    build_index_distributed(scope, corpus, out_dir="my_index")      # from Python, in every rank

Modules, bottom up: ``records`` (named records), ``vocab``, ``files`` (layout, atomic writes, build identity),
``corpus`` (documents -> chunks), ``accumulator`` (streaming statistics, exact merge), ``labels`` (automatic
labels), ``writer`` (one layer's parquet files), ``label_files`` (explanations from elsewhere), ``reader``
(``FeatureIndex``), ``search``, ``budget`` (layers per pass within the SAE bank's budget), ``builder``
(``build_index``), ``distributed`` (shards and their exact merge), ``__main__`` (the command line).
"""

from .accumulator import FeatureAccumulator
from .budget import layers_that_fit
from .builder import build_index
from .corpus import CorpusReport
from .distributed import build_index_distributed, build_shard, merge_shards
from .reader import FeatureIndex
from .records import Chunk, Context, FeatureCard, IndexSettings
from .search import search_by_example
from .vocab import vocab_strings

__all__ = ["build_index", "build_index_distributed", "build_shard", "merge_shards", "FeatureIndex",
           "FeatureAccumulator", "CorpusReport", "search_by_example", "layers_that_fit", "vocab_strings",
           "Chunk", "Context", "FeatureCard", "IndexSettings"]
