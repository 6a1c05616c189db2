"""A training run owns its folder: nothing in it is destroyed by mistake, and no two runs
write to it at once.

`claim(settings)` is the one gate every training script passes before any work:
  - `run_dir` already holds a run (a checkpoint, a log, results) and neither
    --resume=true nor --overwrite=true is given: stop, naming both. Rerunning the same
    command must not replace a step-400 checkpoint by a step-20 one.
  - --resume=true with no checkpoint in `run_dir`: stop (it would silently start afresh).
  - --overwrite=true: the run's own files are deleted and the run starts afresh.
  - `out_dir` (where the model goes) already holds a model: the same rule. A resumed run
    may name another --out_dir, but not one holding a model it did not write itself
    (`run_dir/out_dirs.txt` lists the folders the run has claimed).
  - A lock file, `run_dir/run.lock`, holds the process id and host of the run using the
    folder; a second run on it stops. A lock left by a process that no longer runs (on
    this host) is taken over, with a message. The lock is removed when the run ends.
Under torchrun only rank 0 claims the folder (it alone writes there); if it refuses,
torchrun stops the other ranks.
"""

import contextlib
import json
import os
import socket
import time
from pathlib import Path

LOCK_FILE = "run.lock"
RUN_FILES = ("checkpoint*.pt", "checkpoint*.pt.tmp", "*log.csv", "results.json")
MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin")
OUT_DIRS = "out_dirs.txt"  # the model folders this run has claimed, one absolute path a line


def process_is_running(pid):
    try:
        os.kill(pid, 0)  # signal 0: no signal, only the check that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def acquire_lock(run_dir, setting="--run_dir"):
    """Write run_dir/run.lock, or raise FileExistsError naming the run that holds it (and the
    `setting` that chose the folder, to be changed). The
    lock is written whole to a temporary file and then hard-linked into place, which fails
    if the lock exists: two runs starting at the same moment cannot both get it."""
    path = Path(run_dir) / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    tmp = path.with_name(f"{LOCK_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(me) + "\n")
    try:
        while True:
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                pass
            try:
                holder = json.loads(path.read_text())
                pid, host = int(holder["pid"]), str(holder["host"])
            except (OSError, ValueError, KeyError, TypeError):
                raise FileExistsError(f"{path} exists but cannot be read; if no run is using {run_dir}, "
                                      f"delete it") from None
            if host == me["host"] and not process_is_running(pid):
                print(f"{path}: taking over the lock of process {pid} (started {holder.get('started')}), "
                      f"which is no longer running")
                path.unlink(missing_ok=True)
                continue
            raise FileExistsError(f"{setting}={run_dir} is in use by process {pid} on {host} (started "
                                  f"{holder.get('started')}, see {path}); wait for it to end or use another "
                                  f"{setting}. If that run is over, delete {path}")
    finally:
        tmp.unlink(missing_ok=True)


def release_lock(path):
    """Remove the lock if it is still ours."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def existing(folder, patterns):
    return sorted({p.name for pattern in patterns for p in Path(folder).glob(pattern)})


def claimed_out_dirs(run_dir):
    path = Path(run_dir) / OUT_DIRS
    return path.read_text().splitlines() if path.is_file() else []


def check_and_clear(run_dir, out_dir, resume, overwrite):
    """The rules of the module docstring, once the lock is held."""
    run_files = existing(run_dir, RUN_FILES)
    model_files = existing(out_dir, MODEL_FILES) if out_dir is not None else []
    if resume:
        if not any(name.endswith(".pt") for name in run_files):
            raise FileNotFoundError(f"--resume=true but {run_dir} holds no checkpoint to resume from")
        claimed = claimed_out_dirs(run_dir)
        if model_files and str(out_dir.resolve()) not in claimed:
            raise FileExistsError(f"--out_dir={out_dir} holds a model this run did not write "
                                  f"({', '.join(model_files)}): resume with "
                                  + (f"the run's own --out_dir={claimed[-1]}, or " if claimed else "")
                                  + "a folder that holds no model")
        return
    if run_files and not overwrite:
        raise FileExistsError(f"{run_dir} already holds a run ({', '.join(run_files)}): continue it with "
                              f"--resume=true, or start afresh with --overwrite=true (which deletes them)")
    if model_files and not overwrite:
        raise FileExistsError(f"--out_dir={out_dir} already holds a model ({', '.join(model_files)}): use another "
                              f"--out_dir, or replace it with --overwrite=true")
    for name in run_files:  # --overwrite=true: the old run's files go, so nothing of it can be resumed by mistake
        (Path(run_dir) / name).unlink()
    (Path(run_dir) / OUT_DIRS).unlink(missing_ok=True)  # a run starting afresh owns no model folder yet


def claim_out_dir(run_dir, out_dir):
    """Note that this run writes its model to out_dir (checked when it is resumed): a script
    calls it before it first writes there, not earlier, so a run refused at its start leaves
    nothing behind."""
    claimed = claimed_out_dirs(run_dir)
    if str(out_dir.resolve()) not in claimed:
        (Path(run_dir) / OUT_DIRS).write_text("".join(line + "\n" for line in [*claimed, str(out_dir.resolve())]))


@contextlib.contextmanager
def claim(settings):
    """Hold settings["run_dir"] for the length of the `with` block (see the module docstring)."""
    if settings["resume"] and settings["overwrite"]:
        raise ValueError("--resume=true continues a run and --overwrite=true deletes it: give one of them")
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun's other ranks: rank 0 holds the folder
        yield
        return
    run_dir = Path(settings["run_dir"])
    out_dir = Path(settings["out_dir"]) if settings.get("out_dir") else None
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(run_dir)
    try:
        check_and_clear(run_dir, out_dir, settings["resume"], settings["overwrite"])
        yield
    finally:
        release_lock(lock)
