"""Ctrl-C in the middle of any of the three training scripts lets the step in progress
finish, writes a checkpoint of it, and --resume=true continues from there to the weights of
a run never interrupted (issue 17: train_mtl.py wrote none; then the checkpoint was written
wherever in a step Ctrl-C landed, and a resumed run applied that step twice)."""

import signal
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


def ctrl_c_after_an_optimizer_step(monkeypatch, nth, times=1):
    """A real SIGINT at the most awkward moment of a step: after the nth optimizer step has
    changed the weights, before the script counts the step (every script zeroes the
    gradients between the two)."""
    calls = {"n": 0}
    original = torch.optim.AdamW.zero_grad

    def zero_grad(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == nth:
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(torch.optim.AdamW, "zero_grad", zero_grad)


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


def elsewhere(settings, tmp_path, name):
    """The same settings, with the run (and its output) in another folder."""
    return [a.replace(str(tmp_path / "run"), str(tmp_path / name)).replace(str(tmp_path / "out"), str(tmp_path / f"{name}_out"))
            for a in settings]


@pytest.mark.parametrize("script", [train_mlm, train_embedder, train_mtl], ids=lambda script: script.__name__)
def test_ctrl_c_during_a_step_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path, monkeypatch, script):
    monkeypatch.chdir(tmp_path)  # caches go to ./.cache
    settings, checkpoint_name = arguments(script, tmp_path)
    script.main(elsewhere(settings, tmp_path, "straight"))
    uninterrupted = load_checkpoint(tmp_path / "straight" / checkpoint_name, {}, ())

    ctrl_c_after_an_optimizer_step(monkeypatch, nth=3)
    with pytest.raises(KeyboardInterrupt):
        script.main(settings)
    checkpoint_path = tmp_path / "run" / checkpoint_name
    assert torch.load(checkpoint_path, weights_only=True)["step"] == 3  # the step in progress, finished
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    script.main([*settings, "--resume=true"])
    resumed = load_checkpoint(checkpoint_path, {}, ())
    assert resumed["step"] == uninterrupted["step"] == 6
    for name, tensor in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings, checkpoint_name = arguments(train_mlm, tmp_path)
    ctrl_c_after_an_optimizer_step(monkeypatch, nth=3, times=2)
    with pytest.raises(KeyboardInterrupt):
        train_mlm.main(settings)
    assert not (tmp_path / "run" / checkpoint_name).exists()  # none was due (every 100 steps); none half-made
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
