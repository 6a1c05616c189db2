"""Sentences in, vectors out: tokenizer + encoder + mean pooling (+ L2 normalisation).

This is what sentence-transformers does for all-MiniLM-L6-v2 (its modules.json reads
Transformer -> Pooling(mean) -> Normalize), written with minibert's own parts:

    embedder = SentenceEmbedder.from_pretrained("base-transformer")
    vectors = embedder.encode(["A plane is taking off.", "An air plane is taking off."])
    vectors @ vectors.T   # cosine similarities, since the rows have unit length

`python -m minibert.embedder --model DIR --sts test` prints the similarities of example
sentences and scores DIR on STS-B (minibert/sts.py).
"""

import argparse
import contextlib
import json
from pathlib import Path

import numpy as np
import torch

from .batching import padded
from .heads import mean_pool
from .overrides import run_from_command_line
from .sts import evaluate_sts, sts_path
from .tokenizer import WordPieceTokenizer
from .transformer_with_heads import TransformerWithHeads

# On a CPU, scaled_dot_product_attention's fused kernel works through blocks of query rows; a
# batch of rows this short leaves the blocks mostly empty, and the plain products (its "math"
# backend, the same numbers) are faster: 0.9-2.3x for rows of 6 to 16 tokens, about 1.2x at 20 to
# 24, 0.35-0.7x from 32 on (bench/bench_cpu_attention.py: 128 rows, 12 heads of 32, 2 threads).
# Sentences are mostly this short. Only inference needs the choice: in training, attention dropout
# already sends SDPA to the math backend on a CPU (the fused CPU kernel has no dropout).
SHORT_ROWS = 16


def attention_kernel(device, seq_len):
    """The scaled_dot_product_attention backend for a batch of this length: math for short
    rows on a CPU, PyTorch's own choice otherwise."""
    if device.type == "cpu" and seq_len <= SHORT_ROWS:
        return torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH)
    return contextlib.nullcontext()


def read_json(path):
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def sentence_transformers_settings(directory, positions):
    """What a sentence-transformers folder says about its vectors, checked against what
    SentenceEmbedder does (the encoder, mean pooling, optionally unit length): its modules
    (modules.json), the pooling (the Pooling module's config.json), the longest sentence
    (sentence_bert_config.json; at most the model's `positions`). A folder that asks for anything else (CLS pooling, a Dense
    projection) is refused: pooled otherwise, its vectors would be silently wrong.
    A folder without these files (ours) gives {"max_length": None, "normalize": True}."""
    settings = {"max_length": None, "normalize": True}
    modules_path = directory / "modules.json"
    if modules_path.is_file():
        modules = read_json(modules_path)
        kinds = [module.get("type", "") if isinstance(module, dict) else "" for module in modules] \
            if isinstance(modules, list) else None
        if kinds is None or "" in kinds:
            raise ValueError(f"{modules_path}: expected a list of modules, each with a 'type'")
        names = [kind.rsplit(".", 1)[-1] for kind in kinds]
        if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
            raise ValueError(f"{modules_path}: the modules are {' -> '.join(names)}; SentenceEmbedder runs "
                             f"Transformer -> Pooling (mean) [-> Normalize] only")
        settings["normalize"] = names[-1] == "Normalize"
        pooling_path = directory / modules[1].get("path", "1_Pooling") / "config.json"
        if pooling_path.is_file():
            pooling = read_json(pooling_path)
            modes = sorted(key[len("pooling_mode_"):] for key, on in (pooling.items() if isinstance(pooling, dict)
                                                                       else []) if key.startswith("pooling_mode_") and on)
            if modes != ["mean_tokens"]:
                raise ValueError(f"{pooling_path}: pooling {' + '.join(modes) or 'none'}; SentenceEmbedder pools "
                                 f"by the mean of the tokens (pooling_mode_mean_tokens) only")
    config_path = directory / "sentence_bert_config.json"
    if config_path.is_file():
        config = read_json(config_path)
        if not isinstance(config, dict):
            raise ValueError(f"{config_path}: holds a JSON {type(config).__name__}, not an object of settings")
        settings["max_length"] = length = config.get("max_seq_length")
        if length is not None and (isinstance(length, bool) or not isinstance(length, int)
                                   or not 2 <= length <= positions):
            raise ValueError(f"{config_path}: max_seq_length must be an integer from 2 ([CLS] and [SEP]) to the "
                             f"model's {positions} positions, got {length!r}")
    return settings


class SentenceEmbedder:

    def __init__(self, model, tokenizer, max_length=None, normalize=True):
        if tokenizer.vocab_size > model.config.vocab_size:
            raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocabulary "
                             f"{model.config.vocab_size} (config.json vocab_size): do vocab.txt and the model belong "
                             f"together?")
        positions = model.config.max_position_embeddings
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or not 2 <= max_length <= positions):
            raise ValueError(f"max_length must be an integer from 2 ([CLS] and [SEP]) to the model's "
                             f"{positions} positions, got {max_length!r}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length or positions
        self.normalize = normalize  # encode's default: unit-length rows

    @classmethod
    def from_pretrained(cls, directory, max_length=None):
        """A model directory with config.json, model.safetensors and vocab.txt. A
        sentence-transformers directory also says how long a sentence may be and how its
        vectors are made (sentence_transformers_settings); both are followed."""
        directory = Path(directory)
        model = TransformerWithHeads.from_pretrained(directory)
        tokenizer = WordPieceTokenizer.from_pretrained(directory)
        settings = sentence_transformers_settings(directory, model.config.max_position_embeddings)
        try:
            return cls(model, tokenizer, max_length or settings["max_length"], settings["normalize"])
        except ValueError as error:
            raise ValueError(f"{directory}: {error}") from None

    @property
    def device(self):
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def encode(self, sentences, batch_size=32, normalize=None, show_progress=False):
        """-> numpy array (N, H) of float32, one row per sentence, in the order given; of unit
        length if `normalize` (None: as the model directory says, unit length for our own).
        One string gives one vector (H,), as in sentence-transformers.

        Every sentence is tokenised first, then batched by token count, so that a batch
        holds little padding (often none: then no attention mask is needed at all);
        padding does not change a sentence's vector (mean pooling ignores it), only the
        cost. The vectors stay on the device until the end: one copy to the host, and a
        GPU never waits for the host between batches.
        """
        if isinstance(sentences, str):
            return self.encode([sentences], batch_size, normalize, show_progress)[0]  # (H,)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        try:
            sentences = list(sentences)
        except TypeError:
            raise TypeError(f"encode takes a sentence or a list of sentences (strings), got {sentences!r}") from None
        if not sentences:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        normalize = self.normalize if normalize is None else normalize
        self.model.eval()
        token_ids = self.tokenizer(sentences, padding=False, truncation=True, max_length=self.max_length,
                                   return_tensors=None)["input_ids"]
        order = sorted(range(len(sentences)), key=lambda i: len(token_ids[i]))
        pooled_batches = []
        starts = range(0, len(order), batch_size)
        if show_progress:
            from tqdm import tqdm
            starts = tqdm(starts, desc="encoding", unit="batch")
        for start in starts:
            rows = [token_ids[i] for i in order[start:start + batch_size]]
            input_ids, attention_mask = padded(rows, self.tokenizer.pad_token_id)  # (b, T)
            all_same_length = len(rows[0]) == len(rows[-1])  # sorted by length
            with attention_kernel(self.device, input_ids.shape[1]):
                hidden_states = self.model.get_encoder_output(
                    input_ids.to(self.device), None if all_same_length else attention_mask.to(self.device))  # (b, T, H)
            pooled = mean_pool(hidden_states.float(), attention_mask.to(self.device))  # (b, H), in float32
            pooled_batches.append(torch.nn.functional.normalize(pooled, p=2, dim=-1) if normalize else pooled)
        out = np.empty((len(sentences), self.model.config.hidden_size), dtype=np.float32)
        out[order] = torch.cat(pooled_batches).cpu().numpy()
        return out

    def similarity(self, sentences_a, sentences_b=None):
        """Cosine similarity matrix (len(a), len(b)) between two lists (or a list and itself); one
        string counts as a list of one, as in sentence-transformers."""
        a = np.atleast_2d(self.encode(sentences_a, normalize=True))  # (N, H), also for one string
        b = a if sentences_b is None else np.atleast_2d(self.encode(sentences_b, normalize=True))
        return a @ b.T


# The exercise brief's examples: two about pets, two about markets, two near-paraphrases.
EXAMPLE_SENTENCES = [
    "Cats love knocking things over.",
    "Dogs are friendly animals.",
    "The stock market fell sharply today.",
    "Investors worried about falling share prices.",
    "A plane is taking off.",
    "An air plane is taking off.",
]

# Sentences from a few themes, for the 2-D map: a good embedder puts each theme in its own region.
THEMES = {
    "animals": ["Cats love knocking things over.", "Dogs are friendly animals.",
                "The kitten chased a ball of wool.", "A horse galloped across the field."],
    "finance": ["The stock market fell sharply today.", "Investors worried about falling share prices.",
                "The central bank raised interest rates.", "Bond yields climbed after the report."],
    "physics": ["The electron spin couples to the magnetic field.", "We measure the quantum phase transition.",
                "Photons are emitted by the excited atoms.", "The fluid becomes turbulent at high Reynolds number."],
    "computing": ["The algorithm sorts the list in linear time.", "We train a neural network on the dataset.",
                  "The compiler optimises the inner loop.", "Packets are routed through the network."],
    "food": ["She baked fresh bread this morning.", "The soup needs more salt.",
             "We grilled vegetables for dinner.", "He makes pasta from scratch."],
}


def print_similarities(embedder, sentences):
    similarity = embedder.similarity(sentences)
    width = max(len(s) for s in sentences)
    print("cosine similarity")
    for i, sentence in enumerate(sentences):
        print(f"  [{i}] {sentence:{width}s} " + " ".join(f"{similarity[i, j]:5.2f}" for j in range(len(sentences))))
    return similarity


def plot_themes(embedder, png_path, title):
    from .plots import plot_projection
    sentences = [s for group in THEMES.values() for s in group]
    groups = [name for name, group in THEMES.items() for _ in group]
    return plot_projection(embedder.encode(sentences), groups, sentences, png_path, title=title)


def plot_path_problem(path):
    """Why matplotlib cannot write the map to `path` (None if it can). Found before the model
    is loaded; matplotlib itself finds it after, or writes `path` + ".png" when `path` has no
    suffix (a folder too), and the command would print a name it did not write."""
    from matplotlib.backend_bases import FigureCanvasBase
    path = Path(path)
    if path.is_dir():
        return f"--plot {path} is a folder; give a file name ending in .png"
    if not path.resolve().parent.is_dir():
        return f"--plot {path}: the folder {path.parent} does not exist"
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in FigureCanvasBase.get_supported_filetypes():
        kind = f"a .{suffix} image" if suffix else "an image without a suffix"
        return f"--plot {path}: matplotlib cannot write {kind}; give a file name ending in .png (or .pdf, .svg)"
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description="Sentence embeddings of a model directory: cosine similarities "
                                                 "of example sentences, a 2-D map of themed sentences, STS-B scores.")
    parser.add_argument("--model", required=True, help="directory with config.json, model.safetensors, vocab.txt")
    parser.add_argument("--plot", default=None, help="write the PCA map of themed sentences to this PNG")
    parser.add_argument("--sts", default=None, choices=["train", "dev", "test"], help="evaluate on this STS-B split")
    parser.add_argument("--data_dir", default=None, help="folder holding sts/stsbenchmark (default: MINIBERT_DATA)")
    parser.add_argument("--batch_size", type=int, default=64, help="sentences encoded at once")
    parser.add_argument("sentences", nargs="*", help="sentences to compare (default: the exercise brief's examples)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:  # found now, not after the model is loaded and the similarities printed
        parser.error(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.plot and (problem := plot_path_problem(args.plot)):
        parser.error(problem)
    if args.sts:
        try:
            sts_path(args.sts, args.data_dir)
        except FileNotFoundError as error:
            parser.error(f"--sts {args.sts}: {error}")
    embedder = SentenceEmbedder.from_pretrained(args.model)
    print(f"model: {args.model}")
    print_similarities(embedder, args.sentences or EXAMPLE_SENTENCES)
    if args.plot:
        title = "/".join(Path(args.model).parts[-2:]) + ": PCA of mean-pooled embeddings"
        print(f"2-D projection written to {plot_themes(embedder, args.plot, title)}")
    if args.sts:
        result = evaluate_sts(embedder, args.sts, args.data_dir, args.batch_size)
        print(f"STS-B {args.sts}: Spearman x 100 = {100 * result['spearman']:.2f}, "
              f"Pearson x 100 = {100 * result['pearson']:.2f} ({result['pairs']} pairs)")
        print(json.dumps({"model": str(args.model), "split": args.sts, **result}))


if __name__ == "__main__":
    run_from_command_line(main)
