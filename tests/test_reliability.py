"""What a careful user can get wrong, and what the code must then do: refuse clearly,
before any work, and never destroy a run or run code from a file (issue 14).

Each test builds its own tiny inputs in tmp_path; the scripts run at toy sizes."""

import os
import random

import numpy as np
import pytest
import torch

from minibert.training import load_checkpoint, rng_states, save_checkpoint, set_rng_states


# ------------------------------------------------------------------------ checkpoints

class RunsCodeWhenUnpickled:
    """A pickle payload: unpickling it calls os.mkdir(marker), as a hostile file would call os.system."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "optimizer": {}, "step": 1, "elapsed": 0.0, "settings": {}, "rng": {},
                "payload": RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(ValueError, match="checkpoint.pt is not a checkpoint that loads as plain tensors"):
        load_checkpoint(path, {})
    assert not marker.exists()


def damaged_checkpoints(tmp_path):
    whole = tmp_path / "whole.pt"
    save_checkpoint(whole, {"model": {"w": torch.randn(64, 64)}, "optimizer": {}, "step": 3, "elapsed": 1.0,
                            "settings": {}, "rng": rng_states()})
    data = whole.read_bytes()
    return {"empty": b"", "random": np.random.default_rng(0).bytes(4096), "truncated": data[:len(data) // 2],
            "json": b'{"step": 3}', "a_tensor": None}


@pytest.mark.parametrize("kind", ["empty", "random", "truncated", "json", "a_tensor"])
def test_a_damaged_checkpoint_gives_one_error_naming_the_file(tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    content = damaged_checkpoints(tmp_path)[kind]
    if content is None:
        torch.save(torch.zeros(3), path)  # loads fine, but is not a training checkpoint
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{kind}.pt is not a") as error:
        load_checkpoint(path, {})
    assert "\n" not in str(error.value)


def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.standard_normal()  # numpy now holds a cached gaussian too
    save_checkpoint(tmp_path / "c.pt", {"rng": rng_states()})
    expected = (torch.rand(3), np.random.standard_normal(3), [random.random() for _ in range(3)])
    set_rng_states(torch.load(tmp_path / "c.pt", weights_only=True)["rng"])
    again = (torch.rand(3), np.random.standard_normal(3), [random.random() for _ in range(3)])
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


# ------------------------------------------------------------------ numeric settings

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_embedder  # noqa: E402
import train_mlm  # noqa: E402
import train_mtl  # noqa: E402

from minibert.training import SETTING_RULES  # noqa: E402

SCRIPTS = {"train_mlm": train_mlm, "train_embedder": train_embedder, "train_mtl": train_mtl}


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_numeric_setting_has_a_rule(script):
    numeric = [key for key, value in SCRIPTS[script].DEFAULTS.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)]
    assert numeric and [key for key in numeric if key not in SETTING_RULES] == []


BAD_SETTINGS = ["--max_steps=-5", "--max_steps=0", "--batch_size=-4", "--batch_size=0", "--eval_every=0",
                "--checkpoint_every=0", "--learning_rate=nan", "--warmup_fraction=1.5", "--dropout=abc",
                "--dropout=1.5", "--seed=-1", "--max_minutes=-1"]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("setting", BAD_SETTINGS)
def test_a_number_out_of_range_is_refused_before_any_work(tmp_path, script, setting):
    """The inputs do not even exist: the setting must be refused before they are looked for."""
    run_dir, missing = tmp_path / "run", tmp_path / "missing"
    inputs = {"run_dir": run_dir, "init": missing, "data_dir": missing, "corpus": missing / "corpus.txt"}
    args = [f"--{key}={value}" for key, value in inputs.items() if key in SCRIPTS[script].DEFAULTS]
    with pytest.raises(ValueError, match=setting.split("=")[0]) as error:
        SCRIPTS[script].main([setting, *args])
    assert "\n" not in str(error.value)
    assert not run_dir.exists()


@pytest.mark.parametrize("batch_size", [0, -1, 2.5])
def test_encode_refuses_a_batch_size_below_one(batch_size):
    from conftest import odd_config
    from minibert.embedder import SentenceEmbedder
    from minibert.tokenizer import WordPieceTokenizer
    from minibert.transformer_with_heads import TransformerWithHeads
    tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat"])
    embedder = SentenceEmbedder(TransformerWithHeads(odd_config(vocab_size=tokenizer.vocab_size)), tokenizer)
    assert embedder.encode(["a cat", "a"], batch_size=1).shape == (2, 32)
    with pytest.raises(ValueError, match="batch_size"):
        embedder.encode(["a cat", "a"], batch_size=batch_size)
