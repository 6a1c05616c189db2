"""Run the notebooks top to bottom in a fresh kernel and store them with their outputs.

    python notebooks/run_notebooks.py                  # all of them, in place (make notebooks)
    python notebooks/run_notebooks.py 02_wordpiece     # one

The tests (tests/test_notebooks.py) run the same function on copies, so a notebook that
raises fails the test suite.
"""

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
NOTEBOOKS = sorted(HERE.glob("[0-9][0-9]_*.ipynb"))


def execute(path, output_path=None, timeout=600):
    """Execute the notebook at `path` with notebooks/ as its working directory; write it
    (with outputs) to output_path. Raises nbclient's CellExecutionError if a cell fails."""
    notebook = nbformat.read(path, as_version=4)
    # The kernel is the `python` first on PATH: make it this interpreter (the project's venv).
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    started = time.perf_counter()
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute()
    seconds = time.perf_counter() - started
    if output_path is not None:
        nbformat.write(notebook, output_path)
    return seconds


def main(names):
    chosen = [p for p in NOTEBOOKS if not names or p.stem in names]
    if not chosen:
        raise SystemExit(f"no notebook matches {names}; there are {[p.stem for p in NOTEBOOKS]}")
    for path in chosen:
        print(f"{path.name}: {execute(path, path):.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
