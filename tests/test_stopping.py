"""How a run ends, other than at its last step, in each of the three training scripts:
rerunning a run stopped by --stop_at_step stops there again, and a run whose loss or weights
become NaN stops with one line saying so, its last good checkpoint kept.

Before: `--resume=true --stop_at_step=N` from the checkpoint at step N trained on to the end
(the loop stopped only when it reached step N, which it had passed); a diverged run trained
on to the end in NaN, exit status 0, and wrote its NaN weights over the last checkpoint."""

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_embedder  # noqa: E402
import train_mlm  # noqa: E402
import train_mtl  # noqa: E402
from minibert.training import TrainingDiverged  # noqa: E402
from test_interrupt import arguments, elsewhere  # noqa: E402

SCRIPTS = [train_mlm, train_embedder, train_mtl]


def saved(path):
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda script: script.__name__)
def test_the_same_stopped_command_run_again_trains_no_further(tmp_path, monkeypatch, capsys, script):
    monkeypatch.chdir(tmp_path)  # caches go to ./.cache
    settings, checkpoint_name = arguments(script, tmp_path)
    stopped = [*settings, "--stop_at_step=2"]
    script.main(stopped)
    checkpoint = tmp_path / "run" / checkpoint_name
    first = saved(checkpoint)
    assert first["step"] == 2
    capsys.readouterr()

    script.main([*stopped, "--resume=true"])
    assert "the checkpoint is at step 2, at or past --stop_at_step=2: nothing to train" in capsys.readouterr().out
    again = saved(checkpoint)
    assert again["step"] == 2 and all(torch.equal(again["model"][k], v) for k, v in first["model"].items())

    script.main([*settings, "--stop_at_step=4", "--resume=true"])  # a later stop still trains on to it
    assert saved(checkpoint)["step"] == 4


def nan_weights_after_optimizer_step(monkeypatch, nth):
    """What a diverging run does: the nth optimizer step leaves NaN in the weights (its own
    loss, computed before the step, is finite; the next step's is NaN)."""
    calls = {"n": 0}
    original = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == nth:
            with torch.no_grad():
                for group in self.param_groups:
                    for parameter in group["params"]:
                        parameter.fill_(math.nan)
        return result
    monkeypatch.setattr(torch.optim.AdamW, "step", step)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda script: script.__name__)
def test_a_diverged_run_stops_and_keeps_its_last_good_checkpoint(tmp_path, monkeypatch, script):
    monkeypatch.chdir(tmp_path)
    settings, checkpoint_name = arguments(script, tmp_path)
    checkpoint = tmp_path / "run" / checkpoint_name
    nan_weights_after_optimizer_step(monkeypatch, nth=3)

    # Checkpoints every step: step 3's would hold the NaN weights; it is not written.
    with pytest.raises(TrainingDiverged, match=rf"not writing {checkpoint} at step 3: the weights hold NaN .* "
                                               rf"the last checkpoint there is kept; .*lower --learning_rate"):
        script.main([*settings, "--checkpoint_every=1"])
    kept = saved(checkpoint)
    assert kept["step"] == 2
    assert all(torch.isfinite(value).all() for value in kept["model"].values() if value.is_floating_point())

    # No checkpoint due: the next step's loss is NaN, and the run stops there.
    nan_weights_after_optimizer_step(monkeypatch, nth=3)
    with pytest.raises(TrainingDiverged, match=r"the training loss became nan \(\w+\)(, nan \(\w+\))* at step 4: training diverged, "
                                               r"the run stops here and no checkpoint was written before it"):
        script.main(elsewhere(settings, tmp_path, "run2"))
    assert not (tmp_path / "run2" / checkpoint_name).exists()
