"""The package as a whole: the names at its top, imports that form no circle, examples that hold."""

import ast
import doctest
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "minibert"


def test_the_main_classes_import_from_the_top_level():
    import minibert
    from minibert import (BertConfig, MaskedLanguageModelingHead, SentenceClassificationHead, SentenceEmbedder,
                          SentenceEmbeddingHead, TokenClassificationHead, TransformerWithHeads, WordPieceTokenizer)
    from minibert.embedder import SentenceEmbedder as from_submodule
    assert SentenceEmbedder is from_submodule
    config = BertConfig(vocab_size=11, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=9)
    model = TransformerWithHeads(config)
    model.add_head("mlm", MaskedLanguageModelingHead(config))
    model.add_head("embedding", SentenceEmbeddingHead(config))
    model.add_head("classification", SentenceClassificationHead(config, 3))
    model.add_head("tagging", TokenClassificationHead(config, 4))
    tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat"])
    assert SentenceEmbedder(model, tokenizer).encode(["a cat"]).shape == (1, 8)
    assert set(minibert.__all__) <= set(dir(minibert))


def test_every_example_in_a_docstring_gives_what_it_shows():
    # Readers check the worked examples by hand (`>>>` lines): each must be true.
    attempted = 0
    for path in sorted(PACKAGE.glob("*.py")):
        result = doctest.testmod(importlib.import_module(f"minibert.{path.stem}"), report=False)
        assert result.failed == 0, f"{path.name}: {result.failed} example(s) give something else (python -m doctest)"
        attempted += result.attempted
    assert attempted >= 50  # the examples were found and run


def test_the_tokenizer_alone_does_not_import_torch():
    code = "import sys, minibert.tokenizer; from minibert import WordPieceTokenizer; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def imported_modules(path):
    """The minibert modules that a file imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 1:  # from .x import y, or from . import x
                names |= {module} if module else {alias.name for alias in node.names}
            elif module == "minibert":  # from minibert import distributed
                names |= {alias.name for alias in node.names}
            elif module.startswith("minibert."):
                names.add(module.removeprefix("minibert."))
        elif isinstance(node, ast.Import):
            names |= {alias.name.removeprefix("minibert.") for alias in node.names if alias.name.startswith("minibert.")}
    return {name.split(".")[0] for name in names} & {p.stem for p in PACKAGE.glob("*.py")}


def test_no_two_modules_import_each_other_even_indirectly():
    graph = {path.stem: imported_modules(path) for path in PACKAGE.glob("*.py") if path.stem != "__init__"}

    def circle_from(start, module, trail):
        for name in sorted(graph.get(module, ())):
            if name == start:
                return [*trail, name]
            if name not in trail:
                found = circle_from(start, name, [*trail, name])
                if found:
                    return found
        return None

    circles = [circle for module in sorted(graph) if (circle := circle_from(module, module, [module]))]
    assert not circles, f"import circles: {[' -> '.join(circle) for circle in circles]}"


def library_settings_that_the_scripts_set():
    from minibert.contrastive import cosent_loss, info_nce
    from minibert.masking import Masker
    from minibert.pretraining_data import TokenizedCorpus
    from minibert.task_weighting import GradNorm
    from minibert.training import learning_rate_at
    return [(Masker, "rate"), (Masker, "strategy"), (GradNorm, "alpha"), (GradNorm, "lr"), (info_nce, "temperature"),
            (cosent_loss, "scale"), (learning_rate_at, "schedule"), (TokenizedCorpus.split, "held_out_fraction"),
            (TokenizedCorpus.split, "seed")]


def test_a_setting_that_a_script_sets_has_no_second_default_in_the_library():
    """A script's DEFAULTS is the one place: a library default that the script always
    overrides would be an obvious place to edit that changes nothing."""
    shadowed = [f"{function.__qualname__}({name}={inspect.signature(function).parameters[name].default!r})"
                for function, name in library_settings_that_the_scripts_set()
                if inspect.signature(function).parameters[name].default is not inspect.Parameter.empty]
    assert not shadowed, shadowed
