"""Data-parallel training with PyTorch's own engine: `torchrun` starts the processes,
`torch.distributed` connects them, DistributedDataParallel averages the gradients.

    torchrun --nproc_per_node=2 train_mlm.py --batch_size=32        # one machine, 2 processes
    torchrun --nnodes=2 --node_rank=0 --master_addr=HOST --master_port=29500 \\
             --nproc_per_node=8 train_mlm.py ...                       # and node_rank=1 on the other

Started without torchrun, everything here is a no-op: one process, rank 0, world size 1.

How a global batch is shared:
    the step's global batch of B examples is chosen exactly as in one process, from the
    step number and the seed (pretraining_data.batch_at in train_mlm.py and train_mtl.py;
    train_embedder.py shuffles its pairs per epoch the same way), cut into
    `accumulation_steps` micro-steps (train_embedder.py has none: every row's negatives
    are the whole batch), and each micro-step's rows are dealt out to the ranks in turn
    (rank r takes rows r, r + W, r + 2W, ...): a distributed sampler over the batch. So B
    is the same setting whatever the number of processes, and W processes see exactly the
    examples one process would.
Losses that are means over a varying number of items (masked tokens, tagged words) are
rescaled by `share` so that, once DDP averages the ranks' gradients, the result is the
gradient of the mean over the whole global batch, as in one process.
"""

import contextlib
import datetime
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Context:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    # Where the process group's tensors live: NCCL takes CUDA tensors only, gloo CPU ones.
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self):
        """Rank 0 alone logs, plots, evaluates and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1


def setup(device_setting="auto"):
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE, ...).
    Returns (context, device). CUDA: backend nccl, one GPU per local rank; CPU: gloo."""
    from .training import pick_device
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        device = pick_device(device_setting)
        return Context(device=device), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    device = pick_device(device_setting)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    # gloo (the CPU backend) is chosen for any device but CUDA, so its tensors stay on the CPU.
    context = Context(rank=rank, local_rank=local_rank, world_size=int(os.environ["WORLD_SIZE"]),
                      device=device if device.type == "cuda" else torch.device("cpu"))
    if not dist.is_initialized():
        # A long timeout: the other ranks wait at their next all-reduce while rank 0 evaluates.
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=60))
    return context, device


def run_script(defaults, train, argv=None, choices=None):
    """A training script's main(): --key=value settings over `defaults`, every number and
    choice checked before any work (`choices`: the script's own, e.g. --strategy), the run folder claimed (never destroy a run, never share a folder: see
    run_folder.py), then train(settings, context, device) in this process or as one of
    torchrun's."""
    from .overrides import parse_overrides
    from .run_folder import claim
    from .training import check_settings
    settings = parse_overrides(defaults, sys.argv[1:] if argv is None else argv)
    check_settings(settings, choices=choices)
    with claim(settings):
        return launch(train, settings)


def launch(train, settings):
    """Run train(settings, context, device) as this process's part of the group (or alone)."""
    context, device = setup(settings["device"])
    try:
        result = train(settings, context, device)
        # Leave the group together: a rank that tore its connections down while another was
        # still working (rank 0 scoring the test set) was seen to abort in gloo's teardown
        # ("terminate called without an active exception"), failing a finished run. Only
        # after a normal end: after an error the other ranks may never reach the barrier.
        barrier(context)
        return result
    finally:
        cleanup(context)


def cleanup(context):
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model, context, device, find_unused_parameters=False):
    """DDP around `model` when there are several processes; the model itself otherwise.
    Checkpoints always save the inner model, so they load whatever the world size."""
    if not context.distributed:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters)


def micro_batches(rows, context, accumulation_steps):
    """This rank's rows of each micro-step: [rows of micro-step 0, ..., of micro-step A-1]."""
    per_step = len(rows) // accumulation_steps
    return [rows[a * per_step:(a + 1) * per_step][context.rank::context.world_size]
            for a in range(accumulation_steps)]


def check_batch(batch_size, context, accumulation_steps):
    if accumulation_steps < 1 or batch_size % (accumulation_steps * context.world_size):
        raise ValueError(f"--batch_size={batch_size} (the global batch) must split evenly into "
                         f"--accumulation_steps={accumulation_steps} micro-steps on {context.world_size} "
                         f"process(es)")


def share(local_count, global_count, context):
    """The factor that turns this micro-batch's mean loss into its share of the global mean.

    mean_local * count_local / count_global summed over micro-steps and ranks is the global
    mean; DDP *averages* over ranks, hence the extra world_size. One process, no
    accumulation: exactly 1.0, so the single-process path computes what it always did."""
    if local_count == global_count:
        return 1.0
    return context.world_size * local_count / global_count


def sync_context(model, last_micro_step):
    """DDP all-reduces gradients on every backward; on all but the last micro-step of an
    accumulated step that is wasted work, so it is skipped with no_sync()."""
    if last_micro_step or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()


def all_reduce_mean(tensor, context):
    """The mean of `tensor` over the ranks (in place; unchanged with one process)."""
    if context.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= context.world_size
    return tensor


def mean_over_ranks(values, context):
    """The mean over the ranks of Python numbers or a tensor (e.g. each task's loss on this
    rank's share of the batch), as a float32 tensor on the group's device."""
    return all_reduce_mean(torch.as_tensor(values, dtype=torch.float32, device=context.device).clone(), context)


def from_rank0(value, context):
    """Rank 0's float on every rank: e.g. the elapsed time, so that a time budget
    (--max_minutes) ends every rank at the same step."""
    if not context.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=context.device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def broadcast_object(value, context):
    """Rank 0's value of a picklable object, on every rank."""
    if not context.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def quiet(context):
    """tqdm settings: other ranks show no progress bar; rank 0 keeps tqdm's defaults (and
    TQDM_* environment settings, e.g. TQDM_DISABLE=1 in the notebooks)."""
    return {} if context.is_main else {"disable": True}


def barrier(context):
    if context.distributed:
        dist.barrier()
