"""Every tensor the library creates follows the model's device, and every tensor handed to a
collective is on the process group's device (NCCL takes CUDA tensors only).

CI has no GPU, so these tests put the model on PyTorch's `meta` device: a tensor there has
a shape and a dtype but no data, and mixing it with a CPU tensor raises exactly the error a
CUDA/CPU mix raises on a GPU ("... is not on the expected device ..."). A tensor created on
the CPU by mistake is caught here as it would be on a GPU.
"""

import pytest
import torch
import torch.distributed as dist

from minibert import distributed
from minibert.task_weighting import GradNorm, StaticWeights, Uncertainty

META = torch.device("meta")


def meta_losses(shared_weight):
    x = torch.randn(4, shared_weight.shape[1], device=META)
    hidden = x @ shared_weight.t()  # (4, out)
    return [hidden.pow(2).mean(), hidden.abs().mean()]


def test_gradnorm_follows_the_shared_weights_device():
    W = torch.nn.Parameter(torch.randn(5, 3, device=META))
    gradnorm = GradNorm(2, W, alpha=1.5, lr=0.025)
    assert gradnorm.weights.device == META
    losses = meta_losses(W)
    gradient = gradnorm.weight_gradient(losses)  # weights (T,) times gradient norms (T,): same device
    assert gradient.device == META
    gradnorm.update(meta_losses(W))
    total = gradnorm.combine(meta_losses(W))
    assert total.device == META


def test_uncertainty_follows_the_device_it_is_given():
    weighting = Uncertainty(2, device=META)
    assert weighting.log_variances.device == META
    W = torch.nn.Parameter(torch.randn(5, 3, device=META))
    assert weighting.combine(meta_losses(W)).device == META


def test_static_weights_combine_on_any_device():
    W = torch.nn.Parameter(torch.randn(5, 3, device=META))
    assert StaticWeights([1.0, 3.0]).combine(meta_losses(W)).device == META


class RecordingCollectives:
    """Stands in for torch.distributed: records the device of every tensor it is handed."""

    def __init__(self, monkeypatch):
        self.devices = []
        for name in ("all_reduce", "broadcast"):
            monkeypatch.setattr(dist, name, self.record)

    def record(self, tensor, *args, **kwargs):
        self.devices.append(tensor.device)


@pytest.fixture
def two_ranks_on_meta(monkeypatch):
    """A context that believes it is rank 0 of 2, with its process group on `meta`."""
    return distributed.Context(rank=0, local_rank=0, world_size=2, device=META), RecordingCollectives(monkeypatch)


def test_from_rank0_broadcasts_on_the_group_device(two_ranks_on_meta):
    context, collectives = two_ranks_on_meta
    with pytest.raises(RuntimeError, match="meta"):  # a meta tensor has no value to read back
        distributed.from_rank0(12.5, context)
    assert collectives.devices == [META]


def test_mean_over_ranks_of_python_numbers_uses_the_group_device(two_ranks_on_meta):
    context, collectives = two_ranks_on_meta
    values = distributed.mean_over_ranks([0.5, 1.5], context)
    assert collectives.devices == [META] and values.device == META


def test_one_process_needs_no_collective():
    values = distributed.mean_over_ranks([0.5, 1.5], distributed.Context())
    assert values.tolist() == [0.5, 1.5]
