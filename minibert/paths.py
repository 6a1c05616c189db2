"""Where the real datasets are: `--data_dir`, else $MINIBERT_DATA, else `../shared/data`
beside the project. The data is never copied into the project; caches go to `.cache/`."""

import os
from pathlib import Path


def data_dir(explicit=None):
    if explicit:
        return Path(explicit)
    if os.environ.get("MINIBERT_DATA"):
        return Path(os.environ["MINIBERT_DATA"])
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def data_file(relative, explicit_dir=None):
    """The path of a dataset file, or a FileNotFoundError that says how to fix it."""
    path = data_dir(explicit_dir) / relative
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found. minibert reads its datasets from --data_dir, the MINIBERT_DATA "
            f"environment variable, or ../shared/data beside the project; see that folder's SOURCES.md "
            f"for where '{relative}' comes from.")
    return path
