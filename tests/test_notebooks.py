"""Every notebook runs top to bottom in a fresh kernel; a cell that raises fails the test.
The stored copies (with outputs, for reading online) are refreshed by `make notebooks`."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notebooks"))
import run_notebooks  # noqa: E402


def test_there_are_four_notebooks():
    assert [p.stem[:2] for p in run_notebooks.NOTEBOOKS] == ["01", "02", "03", "04"]


# Notebook 04 fine-tunes all-MiniLM-L6-v2 three ways and takes about 150 s of the default run's
# 10 minutes on two cores: it runs with `make test-slow` (and `make notebooks`), the others every time.
NOTEBOOK_CASES = [pytest.param(path, marks=pytest.mark.slow) if path.stem.startswith("04") else path
                  for path in run_notebooks.NOTEBOOKS]


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOK_CASES, ids=lambda p: p.stem)
def test_notebook_runs_from_a_fresh_kernel(path):
    import nbformat
    stored = nbformat.read(path, as_version=4)
    assert all(not any(o.get("output_type") == "error" for o in cell.get("outputs", [])) for cell in stored.cells)
    run_notebooks.execute(path, output_path=None)  # raises CellExecutionError if a cell fails
