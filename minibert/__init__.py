"""minibert: a BERT encoder, its WordPiece tokenizer, pretraining and multi-task fine-tuning,
written from scratch in PyTorch to be read. The README lists the modules in reading order.

The main classes are also here, as `transformers` and `sentence-transformers` users expect:

    from minibert import BertConfig, TransformerWithHeads, WordPieceTokenizer, SentenceEmbedder

They are imported on first use (PEP 562's module __getattr__), so `import minibert.tokenizer`
alone still does not import torch; `from minibert.model import BertModel` works as always.
"""

import importlib

__version__ = "0.1.0"

# name -> the module that defines it
_PUBLIC = {
    "BertConfig": "config",
    "BertModel": "model",
    "TransformerWithHeads": "transformer_with_heads",
    "MaskedLanguageModelingHead": "heads",
    "SentenceEmbeddingHead": "heads",
    "SentenceClassificationHead": "heads",
    "TokenClassificationHead": "heads",
    "WordPieceTokenizer": "tokenizer",
    "SentenceEmbedder": "embedder",
}
__all__ = list(_PUBLIC)


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'minibert' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"minibert.{_PUBLIC[name]}"), name)
    globals()[name] = value  # the next lookup finds it without coming here
    return value


def __dir__():
    return sorted([*globals(), *_PUBLIC])
