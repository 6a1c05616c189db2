"""Ctrl-C in the middle of any of the three training scripts writes a checkpoint of the
step reached, and --resume=true continues from it (issue 17: train_mtl.py wrote none)."""

import sys
from pathlib import Path

import pytest
import torch

from minibert.training import load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_embedder  # noqa: E402
import train_mlm  # noqa: E402
import train_mtl  # noqa: E402
from test_contrastive import write_sts_fixture  # noqa: E402
from test_mtl import write_fixture  # noqa: E402
from test_pretraining import write_corpus  # noqa: E402


def interrupt_at_step(monkeypatch, script, step):
    """Every script sets the learning rate once at the start of each step: Ctrl-C there."""
    calls = {"n": 0}
    original = script.set_learning_rate

    def set_learning_rate(optimizer, lr):
        calls["n"] += 1
        if calls["n"] == step + 1:
            raise KeyboardInterrupt
        original(optimizer, lr)
    monkeypatch.setattr(script, "set_learning_rate", set_learning_rate)


def arguments(script, tmp_path):
    """(settings for a tiny run, the checkpoint it writes)."""
    if script is train_mlm:
        write_corpus(tmp_path / "corpus.txt")
        return [f"--corpus={tmp_path / 'corpus.txt'}", "--preset=tiny", "--vocab_size=300", "--max_seq_len=32",
                "--batch_size=4", "--eval_every=100", "--checkpoint_every=100", "--max_steps=6",
                f"--run_dir={tmp_path / 'run'}", f"--out_dir={tmp_path / 'out'}", "--threads=1"], "checkpoint.pt"
    if script is train_embedder:
        fixture = write_fixture(tmp_path / "fixture")
        write_sts_fixture(tmp_path / "data")
        return [f"--init={fixture / 'init'}", "--objective=cosent", f"--data_dir={tmp_path / 'data'}",
                "--batch_size=4", "--max_steps=6", "--eval_every=100", "--checkpoint_every=100",
                f"--run_dir={tmp_path / 'run'}", f"--out_dir={tmp_path / 'out'}", "--threads=1"], "checkpoint.pt"
    fixture = write_fixture(tmp_path / "fixture")
    return [f"--init={fixture / 'init'}", f"--data_dir={fixture}", "--strategy=joint", "--batch_size=4",
            "--max_steps=6", "--eval_every=100", "--checkpoint_every=100", f"--run_dir={tmp_path / 'run'}",
            "--threads=1"], "checkpoint_joint.pt"


@pytest.mark.parametrize("script", [train_mlm, train_embedder, train_mtl], ids=lambda script: script.__name__)
def test_ctrl_c_writes_a_checkpoint_and_resume_continues(tmp_path, monkeypatch, script):
    monkeypatch.chdir(tmp_path)  # caches go to ./.cache
    settings, checkpoint_name = arguments(script, tmp_path)
    interrupt_at_step(monkeypatch, script, step=3)
    with pytest.raises(KeyboardInterrupt):
        script.main(settings)
    checkpoint_path = tmp_path / "run" / checkpoint_name
    assert checkpoint_path.is_file()
    assert torch.load(checkpoint_path, weights_only=True)["step"] == 3
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    script.main([*settings, "--resume=true"])
    checkpoint = load_checkpoint(checkpoint_path, {}, ())
    assert checkpoint["step"] == 6
