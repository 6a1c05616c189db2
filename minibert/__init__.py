"""minibert: a BERT encoder, its WordPiece tokenizer, pretraining and multi-task fine-tuning,
written from scratch in PyTorch to be read. The README lists the modules in reading order;
import what you need from them (minibert.model, minibert.tokenizer, ...)."""

__version__ = "0.1.0"
