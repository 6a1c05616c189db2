"""The small pieces the training scripts share: the settings' ranges, the device, the
learning-rate schedule, optimizer groups, RNG states, atomic checkpoints and resume,
mixed precision and the progress bar. Each script (train_mlm.py, train_embedder.py,
train_mtl.py) keeps its own training loop."""

import contextlib
import math
import os
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch

from .config import PRESETS
from .masking import Masker


# What each numeric setting of the three scripts may be, declared once: a setting of the
# same name means the same thing in every script. tests/test_reliability.py checks that
# every numeric setting in a script's DEFAULTS has its rule here.
RANGES = {
    ">= 0": lambda value: value >= 0,
    ">= 1": lambda value: value >= 1,
    ">= 3": lambda value: value >= 3,  # a sequence length: [CLS], one token, [SEP]
    "> 0": lambda value: value > 0,
    "in [0, 1)": lambda value: 0 <= value < 1,
    "in (0, 1]": lambda value: 0 < value <= 1,
}
SETTING_RULES = {
    # data
    "corpus_lines": ">= 0", "held_out_fraction": "in [0, 1)", "max_seq_len": ">= 3", "max_sentences": ">= 1",
    "eval_limit": ">= 0", "test_limit": ">= 0", "cls_max_length": ">= 3",
    "ner_max_length": ">= 3", "vocab_size": ">= 1",
    # model and objective
    "dropout": "in [0, 1)", "mask_rate": "in (0, 1]", "temperature": "> 0", "cosent_scale": "> 0",
    "experts": ">= 1", "expert_layers": ">= 1", "top_k": ">= 0", "balance_weight": ">= 0",
    # optimisation
    "batch_size": ">= 1", "accumulation_steps": ">= 1", "learning_rate": "> 0", "head_learning_rate": "> 0",
    "weight_decay": ">= 0", "beta1": "in [0, 1)", "beta2": "in [0, 1)", "grad_clip": "> 0",
    "warmup_fraction": "in [0, 1)", "max_steps": ">= 1", "max_minutes": ">= 0", "stop_at_step": ">= 0",
    "unfreeze_every": ">= 1", "gradnorm_alpha": ">= 0", "gradnorm_lr": "> 0", "uncertainty_lr": ">= 0",
    # bookkeeping
    "eval_every": ">= 1", "eval_batches": ">= 1", "checkpoint_every": ">= 1", "seed": ">= 0", "threads": ">= 0",
}

# --dtype: the precision of the forward pass.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# What each setting that names one of a few things may be, declared the same way. A script's
# own choices (--strategy, --objective) come with the script: run_script(..., choices=...).
SETTING_CHOICES = {
    "preset": tuple(PRESETS), "dtype": ("auto", *DTYPES), "schedule": ("linear", "cosine"),
    "masking": Masker.STRATEGIES, "errors": ("strict", "replace", "ignore"),
}


def check_settings(settings, rules=SETTING_RULES, choices=None):
    """Stop at the first setting outside its range or its choices, with one line naming it,
    before any work starts: --max_steps=-5 would never end, --batch_size=0 divide by zero,
    --preset=huge would be found only after the tokenizer is trained and the corpus read.
    An optional number (--dropout, none by default) is checked when it is given."""
    for key, allowed in {**SETTING_CHOICES, **(choices or {})}.items():
        if key in settings and settings[key] not in allowed:
            raise ValueError(f"--{key} must be one of {', '.join(allowed)}, got {settings[key]!r}")
    if "device" in settings:
        pick_device(settings["device"])  # refuses a device this machine's torch cannot use
    for key, value in settings.items():
        if key not in rules or value is None:
            continue
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"--{key} expects a number (or none), got {value!r}") from None
        if not math.isfinite(value) or not RANGES[rules[key]](value):
            raise ValueError(f"--{key} must be {rules[key]}, got {settings[key]!r}")


def pick_device(name="auto"):
    """--device as a torch.device; auto is CUDA, then Apple's MPS, then the CPU. A device this
    torch cannot use here is refused in one line, not at the first tensor moved to it."""
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()}
    if name == "auto":
        return torch.device(next(kind for kind in ("cuda", "mps", "cpu") if available[kind]))
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {name!r}") from None
    if not available.get(device.type, False):
        raise ValueError(f"--device={name}, but this torch ({torch.__version__}) has no {device.type} device "
                         f"here; use --device=auto or --device=cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device={name}, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def learning_rate_at(progress, peak, warmup_fraction, schedule):
    """Linear warm-up to `peak`, then linear or cosine decay to zero; progress in [0, 1].
    The scripts' DEFAULTS choose the schedule ("linear" or "cosine")."""
    if schedule not in ("linear", "cosine"):
        raise ValueError(f"schedule must be 'linear' or 'cosine', got {schedule!r}")
    if progress < warmup_fraction:
        return peak * progress / warmup_fraction
    decay = min(1.0, (progress - warmup_fraction) / max(1e-12, 1 - warmup_fraction))
    if schedule == "cosine":
        return peak * 0.5 * (1 + math.cos(math.pi * decay))
    return peak * (1 - decay)


def run_progress(step, max_steps, elapsed_s, max_minutes):
    """How far a run is, in [0, 1]: by steps, or by training time when a budget is set,
    whichever is further. The schedule follows it, so a time-budgeted run still decays."""
    by_steps = step / max_steps
    by_time = elapsed_s / (60 * max_minutes) if max_minutes > 0 else 0.0
    return max(by_steps, by_time)


def optimizer_groups(model, weight_decay, verbose=True):
    """Matrices and embeddings decay; biases and LayerNorm weights (dim < 2) do not."""
    params = [p for p in model.parameters() if p.requires_grad]  # a tied matrix appears once
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    if verbose:
        print(f"optimizer: {len(decay)} tensors ({sum(p.numel() for p in decay):,} params) with weight decay, "
              f"{len(no_decay)} tensors ({sum(p.numel() for p in no_decay):,} params) without")
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def dropout_overrides(dropout):
    """--dropout=p as config fields for from_pretrained / from_preset; None keeps the model's."""
    if dropout is None:
        return {}
    return {"hidden_dropout_prob": float(dropout), "attention_probs_dropout_prob": float(dropout)}


def set_learning_rate(optimizer, lr):
    """Every group follows the schedule; a group with an "lr_scale" runs at that multiple of it."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def rng_states():
    """Every random generator's state, as tensors and plain numbers only: a checkpoint must
    load with torch.load(weights_only=True), which never runs code from the file."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss = random.getstate()
    states = {"torch": torch.get_rng_state(),
              "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                        "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
              "python": {"version": version, "state": torch.tensor(python_state, dtype=torch.int64), "gauss": gauss}}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states):
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(python_state["state"].tolist()), python_state["gauss"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class TrainingDiverged(ValueError):
    """The loss or the weights became NaN or infinite. A ValueError, so that the command line
    says it in one line (overrides.run_from_command_line): the cause is a setting (the
    learning rate, float16), and the traceback would point at the loop, not at it."""


DIVERGED_ADVICE = ("rerunning with the same settings diverges the same way: lower --learning_rate "
                   "(or train in bfloat16 or float32 rather than float16), then start afresh with --overwrite=true")


def check_losses_finite(step, losses, checkpoint_path):
    """Stop a run whose loss became NaN or infinite, before it evaluates, logs or checkpoints
    that step: once the loss is NaN so is every gradient, and every later step trains nothing.
    `losses`: {name: value} of this step's training losses, read from the device anyway for
    the progress bar (no extra wait for a GPU)."""
    bad = {name: value for name, value in losses.items() if not math.isfinite(value)}
    if bad:
        named = ", ".join(f"{value} ({name})" for name, value in bad.items())
        kept = f"the last checkpoint, {checkpoint_path}, is from an earlier step" if checkpoint_path.is_file() \
            else "no checkpoint was written before it"
        raise TrainingDiverged(f"the training loss became {named} at step {step}: training diverged, the run stops "
                               f"here and {kept}; {DIVERGED_ADVICE}")


def save_checkpoint(path, checkpoint):
    """Write to a temporary file, then rename: a crash mid-write never corrupts the last one.
    Weights that hold NaN or infinity are not written: the last good checkpoint is kept (a
    step can end with a finite loss and NaN weights, if its gradients overflowed)."""
    weights = {name: value for name, value in checkpoint.get("model", {}).items() if value.is_floating_point()}
    finite = torch.stack([torch.isfinite(value).all() for value in weights.values()]).tolist() if weights else []
    broken = [name for name, ok in zip(weights, finite) if not ok]  # one look per tensor, read back together
    if broken:
        kept = "the last checkpoint there is kept" if path.is_file() else "no checkpoint was written before it"
        raise TrainingDiverged(f"not writing {path} at step {checkpoint.get('step')}: the weights hold NaN or infinity "
                               f"({broken[0]}{f' and {len(broken) - 1} more' if len(broken) > 1 else ''}); training "
                               f"diverged, and {kept}; {DIVERGED_ADVICE}")
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)


def truncate_log(log_path, step):
    """Keep the header and the rows of steps up to `step`. A run killed after logging steps
    beyond its last checkpoint logs them again when it resumes from that checkpoint;
    without this the log would hold those rows twice."""
    if not log_path.is_file():
        return
    lines = log_path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) <= step]
    tmp = log_path.with_name(log_path.name + ".tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, log_path)


class WallClock:
    """Seconds since a run began, summed over the segments that interruptions cut it into:
    each checkpoint stores state_dict(), and a resumed run counts on from there (the work
    lost after the last checkpoint is not counted). `mark(name)` notes when a part of the
    run (a phase) began, so that `since(name)` measures that part alone."""

    def __init__(self):
        self.before, self.started, self.marks = 0.0, time.perf_counter(), {}

    def total(self):
        return self.before + time.perf_counter() - self.started

    def mark(self, name):
        self.marks[name] = self.total()

    def since(self, name):
        return self.total() - self.marks[name]

    def state_dict(self):
        return {"total_s": self.total(), "marks": dict(self.marks)}

    def load_state_dict(self, state):
        """This segment so far now counts on top of the earlier segments' time."""
        self.before = state["total_s"]
        self.marks.update(state["marks"])


CHECKPOINT_KEYS = ("model", "optimizer", "step", "elapsed", "settings", "rng")


def load_checkpoint(path, settings, may_change=()):
    """The checkpoint dict at `path`, after checking that the settings it was written with
    match `settings` (except the keys in `may_change`): resuming with other settings
    would silently train something else."""
    if not path.is_file():
        raise FileNotFoundError(f"--resume=true but there is no {path}")
    # weights_only=True: a checkpoint is a file people share, and unpickling anything else
    # can run code. Ours hold only tensors and plain containers (see rng_states).
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        message = str(error).strip()
        if path.stat().st_size == 0:
            reason = "the file is empty"
        elif message.startswith("Weights only load failed"):
            reason = "it holds more than tensors and plain values, and unpickling the rest could run code"
        else:  # the first sentence of torch's message: truncated, empty, not a checkpoint at all ...
            reason = (message.splitlines() or [type(error).__name__])[0].split(". ")[0]
        raise ValueError(f"{path} is not a checkpoint that loads as plain tensors ({reason}); it is damaged, "
                         f"or not one of ours. Start afresh with --overwrite=true") from None
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise ValueError(f"{path} is not a minibert training checkpoint (no {', '.join(missing)}); "
                         f"start afresh with --overwrite=true")
    changed = [f"--{key}={value} now, {checkpoint['settings'].get(key)} then" for key, value in settings.items()
               if key not in may_change and checkpoint["settings"].get(key) != value]
    if changed:
        raise ValueError(f"--resume=true with other settings than {path} was written with: {'; '.join(changed)}; "
                         f"give them as they were, or start afresh with --overwrite=true")
    return checkpoint


# Settings that may differ between a run and its resumption.
RESUMABLE = ("stop_at_step", "resume", "overwrite", "max_minutes", "max_steps", "eval_every", "checkpoint_every",
             "device", "dtype", "threads", "compile", "out_dir", "accumulation_steps")



def cpu_has_bfloat16():
    """True when this CPU multiplies bfloat16 matrices natively (AVX512-BF16 or AMX): there
    bfloat16 autocast makes a small BERT's training step 1.4-1.6x faster (docs/RESULTS.md,
    section 11); without them it is emulated, and slower than float32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:  # not Linux: assume not
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Precision:
    """Mixed precision as nanoGPT does it: one `autocast` context around the forward pass,
    the weights, the optimizer and every loss reduction staying in float32.

        precision = Precision(settings["dtype"], device)
        with precision.autocast():
            loss = model(...)
        precision.backward(loss)
        precision.step(optimizer, parameters, grad_clip)

    "auto" is bfloat16 on a CUDA card that supports it, float32 elsewhere. bfloat16 has
    float32's exponent range, so its gradients need no scaling; float16 does not, so with
    float16 a GradScaler multiplies the loss before backward (small gradients would
    underflow to zero) and divides the gradients before the optimizer step, skipping any
    step whose gradients overflowed.
    """

    def __init__(self, name, device):
        if name == "auto":
            cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
            name = "bfloat16" if cuda_bf16 else "float32"
        if name not in DTYPES:
            raise ValueError(f"--dtype must be auto, float32, bfloat16 or float16, got {name!r}")
        self.name, self.dtype, self.device = name, DTYPES[name], device
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    @property
    def loss_scale(self):
        """The factor the loss is multiplied by before backward (1.0 without float16)."""
        return self.scaler.get_scale() if self.scaler.is_enabled() else 1.0

    def backward(self, loss):
        self.scaler.scale(loss).backward()

    def step(self, optimizer, parameters, grad_clip):
        """Unscale (float16), clip the gradient norm to grad_clip, and step."""
        self.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self):
        return self.scaler.state_dict()

    def load_state_dict(self, state):
        if state:
            self.scaler.load_state_dict(state)


class ProgressBar:
    """tqdm over steps, or over training seconds when a time budget (--max_minutes) is set:
    a time-budgeted run ends when its time is up, not at --max_steps, so a bar in steps
    would show a meaningless total ("44/100000 [01:28<57:16:25]")."""

    def __init__(self, settings, step, elapsed, desc, **tqdm_settings):
        from tqdm import tqdm
        self.by_time = settings["max_minutes"] > 0
        if self.by_time:
            budget = round(60 * settings["max_minutes"])
            self.bar = tqdm(total=budget, initial=min(round(elapsed), budget),
                            desc=desc, unit="s", dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]",
                            **tqdm_settings)
        else:
            self.bar = tqdm(total=settings["max_steps"], initial=step, desc=desc, unit="step", dynamic_ncols=True,
                            **tqdm_settings)
        self.elapsed = elapsed

    def update(self, step, elapsed, **postfix):
        """After each step: the step count, the training time so far, and what to show."""
        if self.by_time:
            self.bar.update(min(elapsed, self.bar.total) - min(self.elapsed, self.bar.total))
            postfix = {"step": step, **postfix}
        else:
            self.bar.update(1)
        self.elapsed = elapsed
        self.bar.set_postfix(postfix)

    def close(self):
        self.bar.close()


# ---- the start and the end of a run, the same in every script ----

def begin_run(settings, context, device):
    """What every training script does first: its precision, the CPU threads, run_dir, the seed.
    Returns (run_dir, precision, say); say prints on rank 0 only, which speaks for all."""
    precision = Precision(settings["dtype"], device)
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    run_dir = Path(settings["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings["seed"])
    say = print if context.is_main else (lambda *args, **kwargs: None)
    return run_dir, precision, say


def seed_this_rank(settings, context, step):
    """Under torchrun each rank draws its own dropout masks (the data is already split), from
    a seed that depends on the step, so a resumed run draws what it would have drawn."""
    if context.distributed:
        torch.manual_seed(settings["seed"] * 1_000_003 + 7919 * context.rank + step)


def stop_requested(step, settings, say, interrupted=False):
    """At a step's end: --stop_at_step ends the run after that step (returns True), and so
    does a Ctrl-C during the step (`interrupted`), with KeyboardInterrupt once its checkpoint
    is written."""
    if interrupted:
        say(f"\ninterrupted after step {step}; checkpoint written; continue with --resume=true")
        raise Interrupted
    if step != settings["stop_at_step"]:
        return False
    say(f"stopping at step {step} as asked (--stop_at_step); continue with --resume=true")
    return True


def already_past_stop(checkpoint, settings, say):
    """A resumed run whose checkpoint is at or past --stop_at_step, short of the end: that run
    stopped there already, so the same command run again trains no further (it used to train
    on to the end, the step it stops at never coming again)."""
    step = checkpoint["step"]
    unfinished = run_progress(step, settings["max_steps"], checkpoint["elapsed"], settings["max_minutes"]) < 1.0
    if not (unfinished and 0 < settings["stop_at_step"] <= step):
        return False
    say(f"the checkpoint is at step {step}, at or past --stop_at_step={settings['stop_at_step']}: nothing to train; "
        f"continue with a later --stop_at_step, or 0 to train to the end")
    return True


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, taken at the end of a step whose checkpoint is written."""


class CtrlC:
    """Ctrl-C during a training loop, taken at the end of the step in progress.

    Stopping in the middle of a step would checkpoint a state no run passes through (the
    weights updated but the step not yet counted, this step's dropout masks already drawn),
    and the resumed run would not end as an uninterrupted one does. So the first Ctrl-C only
    takes note (`pending`), and the loop looks at each step's end. A second Ctrl-C stops at
    once. Under torchrun every rank follows rank 0's note (distributed.from_rank0), so that all
    stop after the same step."""

    def __init__(self, say):
        self.say, self.pending = say, False

    def __call__(self, signal_number, frame):
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True
        self.say("\nCtrl-C: finishing this step, then writing a checkpoint (Ctrl-C again to stop at once)")


@contextlib.contextmanager
def checkpoint_on_interrupt(checkpoint_path, say, bar):
    """Around a training loop: Ctrl-C ends the step in progress, and the loop then writes its
    checkpoint and stops (stop_requested(..., interrupted=...)), so --resume=true
    continues as if never interrupted. Yields the CtrlC to ask. A second Ctrl-C stops at
    once, leaving the last checkpoint written. The progress bar is closed however the loop ends."""
    ctrl_c = CtrlC(say)
    # Python lets only the main thread handle signals; elsewhere Ctrl-C stops at once.
    handling = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, ctrl_c) if handling else None
    try:
        yield ctrl_c
    except Interrupted:
        raise
    except KeyboardInterrupt:
        say(f"\nstopped at once; {checkpoint_path} holds the last checkpoint written, if any: "
            f"continue from it with --resume=true")
        raise
    finally:
        if handling:
            signal.signal(signal.SIGINT, previous)
        bar.close()
