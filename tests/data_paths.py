"""Where the shared data lives, and what a test does when it is not there.

The data (see shared/data/SOURCES.md) is not part of the repository. Tests find it through
the MINIBERT_DATA environment variable, or else in `shared/data` beside the project root.
A test that needs it must not pass silently without it: under CI (CI=true) a missing file
is a failure; on a developer's machine it is a skip that says what to do.
"""

import os
from pathlib import Path

import pytest

from minibert.paths import data_dir


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_data(relative_path: str | os.PathLike) -> Path:
    """The path of a data file (relative to the data directory), or fail/skip if absent."""
    path = data_dir() / relative_path
    if not path.exists():
        message = (f"data file {path} is missing: set MINIBERT_DATA to the shared data directory "
                   f"(see shared/data/SOURCES.md)")
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path
