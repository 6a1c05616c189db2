"""Every command in the README's ```bash and ```python blocks runs as written, at a tiny
size: the test appends small settings (--max_steps=2, ...) to each command, which override
the README's own (later --key=value settings win). They run in a scratch folder, the first
one first, as a reader would type them: its base-transformer/ feeds the others, which (each
writing a folder of its own) then run two at a time. The ```json block is the task file the
--tasks commands read, beside small data files the test writes. Not run: `make ...` (make test is this suite; make demo is CI's other job) and the
indented two-machine torchrun example, which needs two machines."""

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Small settings per program; a README command with none of these fails the test, so a
# new command cannot go untested.
TINY = {
    "train_mlm.py": "--preset=tiny --corpus_lines=300 --vocab_size=2000 --max_steps=3 --max_minutes=0 --batch_size=8 "
                    "--max_seq_len=32 --eval_every=3 --eval_batches=2 --accumulation_steps=1",
    "train_embedder.py": "--max_steps=2 --max_minutes=0 --batch_size=8 --max_sentences=64 --eval_every=2 --max_seq_len=32",
    "train_mtl.py": "--max_steps=2 --batch_size=4 --train_limit=32 --eval_limit=16 --test_limit=16 --eval_every=2 "
                    "--cls_max_length=32",
    # the balanced cells only, two at a time (each run is a process of its own, mostly starting
    # up): tests/test_mtl_experiment.py runs the 10%-SciERC cells and their extras
    "bench/mtl_experiment.py": "--max_steps=2 --batch_size=4 --arxiv_train_limit=32 --eval_limit=16 --eval_every=2 "
                               "--cls_max_length=32 --out=grid --results=RESULTS.md --figures=img --imbalanced_extra= "
                               "--data=balanced --jobs=2",
    "minibert.embedder": "",   # argparse; already small (a tiny model on STS-B test)
    "minibert.tokenizer_trainer": "",  # trains on the scratch corpus.txt
}


def readme_blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def commands():
    found = []
    for block in readme_blocks("bash"):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(("python", "torchrun")):
                found.append(line)
    return found


def program(command):
    for name in TINY:
        if name in command:
            return name
    raise AssertionError(f"README command with no tiny settings in tests/test_readme.py: {command}")


def write_own_tasks(folder):
    """The README's task file, and small files of the shapes it describes."""
    (folder / "my_tasks.json").write_text(readme_blocks("json")[0])
    (folder / "reviews").mkdir()
    (folder / "entities").mkdir()
    for split in ("train", "dev", "test"):
        rows = [f"Review {i},{'a fine cat' if i % 2 else 'a bad dog'} sat on the mat,{1 + 4 * (i % 2)}" for i in range(12)]
        (folder / "reviews" / f"{split}.csv").write_text("title,body,stars\n" + "\n".join(rows) + "\n")
        sentence = "the O\ncat B-ANIMAL\nsat O\non O\nthe O\nbig B-THING\nmat I-THING\n"
        (folder / "entities" / f"{split}.conll").write_text((sentence + "\n") * 8)


def test_readme_commands_run_at_a_tiny_size(tmp_path):
    for script in ("train_mlm.py", "train_mtl.py", "train_embedder.py", "bench"):
        (tmp_path / script).symlink_to(ROOT / script)
    (tmp_path / "corpus.txt").write_text("the cat sat on the mat\na dog ran in the park\n" * 50)
    write_own_tasks(tmp_path)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
    found = commands()
    assert any(c.startswith("torchrun") for c in found) and any("train_mtl.py" in c for c in found)
    snippets = readme_blocks("python")
    assert len(snippets) == 1

    def run(command):
        line = f"{command} {TINY[program(command)]}"
        done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"

    # The first command writes base-transformer/, which the Python example and the other commands read.
    assert found[0].startswith("python train_mlm.py"), found[0]
    run(found[0])
    snippet = subprocess.run([sys.executable, "-c", snippets[0]], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert snippet.returncode == 0, snippet.stderr[-2000:]
    # The others write folders of their own, so they run two at a time (one thread each: a process of
    # this size spends most of its seconds starting up), torchrun's two-process runs alone after them.
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(run, [command for command in found[1:] if not command.startswith("torchrun")]))
    for command in found[1:]:
        if command.startswith("torchrun"):
            run(command)
    assert (tmp_path / "base-transformer" / "model.safetensors").is_file()
    mine = json.loads((tmp_path / "runs" / "mine" / "results.json").read_text())
    assert list(mine["test"]) == ["reviews", "entities"] and mine["phases"]["joint"]["final_task_weights"] == [1, 3]
    assert "| mini | balanced | joint |" in (tmp_path / "RESULTS.md").read_text()
