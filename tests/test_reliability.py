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
