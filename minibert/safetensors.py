"""Read and write the safetensors format, the file Hugging Face models ship their weights in.

The format is small enough to hold in your head:

    [ 8 bytes: N, little-endian uint64 ][ N bytes: JSON header ][ raw tensor bytes ... ]

The header maps each tensor's name to {"dtype": "F32", "shape": [2, 3],
"data_offsets": [begin, end]}, offsets counted from the first byte after the header, plus
an optional "__metadata__" dict of strings. Tensors are stored little-endian, row-major,
back to back with no gaps. Unlike a pickle, loading runs no code: it is just bytes.
"""

import json
import os
import struct
import sys
from pathlib import Path

import torch

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
# The format's other dtypes: a file holding them is valid, but no BERT checkpoint needs them.
UNREAD_DTYPES = ("U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64")

if sys.byteorder != "little":  # the bytes on disk are little-endian; we copy them as they are
    raise ImportError("minibert.safetensors assumes a little-endian machine")


def corrupt(path, why):
    return ValueError(f"{path} is not a valid safetensors file: {why}. "
                      "The file may be truncated or damaged; re-download or re-save it.")


def is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0  # JSON's true is not a size


def load_file(path):
    """Read a safetensors file into a dict of name -> tensor (CPU)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no safetensors file at {path}")
    data = bytearray(path.stat().st_size)  # read straight into one writable buffer: no second copy
    with open(path, "rb") as f:
        f.readinto(data)
    if len(data) < 8:
        raise corrupt(path, f"it is {len(data)} bytes long, shorter than the 8-byte header size")
    (header_size,) = struct.unpack("<Q", data[:8])
    if header_size > len(data) - 8:
        raise corrupt(path, f"the header claims {header_size} bytes but only {len(data) - 8} follow")
    try:
        header = json.loads(data[8:8 + header_size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise corrupt(path, f"the header is not valid JSON ({e})") from e
    if not isinstance(header, dict):
        raise corrupt(path, "the header is not a JSON object")
    # The reference reads the header into typed fields (a map of strings, lists of unsigned
    # integers) and refuses anything else; JSON allows any value, so each is checked here.
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise corrupt(path, f"__metadata__ must map names to strings, got {metadata!r}")

    buffer_start, buffer_size = 8 + header_size, len(data) - 8 - header_size
    tensors, spans = {}, []
    for name, info in header.items():
        if not (isinstance(info, dict) and {"dtype", "shape", "data_offsets"} <= info.keys()):
            raise corrupt(path, f"entry {name!r} lacks a dtype, a shape or data_offsets ({info!r})")
        dtype_name, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype_name in UNREAD_DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {dtype_name}, which minibert does not read "
                             f"(it reads {', '.join(DTYPES)}); the file itself is fine: convert that tensor "
                             "to one of those dtypes with the safetensors library")
        if not (isinstance(dtype_name, str) and dtype_name in DTYPES):
            raise corrupt(path, f"entry {name!r} has an unknown dtype {dtype_name!r}")
        if not (isinstance(shape, list) and all(is_count(n) for n in shape)):
            raise corrupt(path, f"entry {name!r} has shape {shape!r}; a shape is a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(is_count(n) for n in offsets)):
            raise corrupt(path, f"entry {name!r} has data_offsets {offsets!r}; they must be two non-negative "
                                "integers [begin, end]")
        dtype, (begin, end) = DTYPES[dtype_name], offsets
        numel = 1
        for n in shape:
            numel *= n
        nbytes = numel * dtype.itemsize
        if not begin <= end <= buffer_size:
            raise corrupt(path, f"entry {name!r} points at bytes [{begin}, {end}) outside the "
                                f"{buffer_size}-byte data section (truncated file?)")
        if end - begin != nbytes:
            raise corrupt(path, f"entry {name!r} of shape {shape} and dtype {dtype_name} needs "
                                f"{nbytes} bytes but spans {end - begin}")
        spans.append((begin, end, name))
        # A view into the one buffer we read: no copy per tensor.
        flat = torch.frombuffer(data, dtype=dtype, count=numel, offset=buffer_start + begin) if numel \
            else torch.empty(0, dtype=dtype)
        tensors[name] = flat.view(shape)

    # The data section must be covered exactly, tensor after tensor: overlaps or holes
    # mean the header and the bytes do not belong together.
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise corrupt(path, f"entry {name!r} starts at byte {begin}, expected {position} (overlap or gap)")
        position = end
    if position != buffer_size:
        raise corrupt(path, f"{buffer_size - position} trailing bytes after the last tensor")
    return tensors


def save_file(tensors, path, metadata=None):
    """Write a dict of name -> tensor. The header is padded with spaces to a multiple of 8
    bytes so every tensor's data starts aligned, as the reference writer does. The file is
    written to a temporary name and renamed, so a crash never leaves half a file."""
    path = Path(path)
    header, offset, chunks = {}, 0, []
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name in sorted(tensors):
        tensor = tensors[name]
        if tensor.dtype not in DTYPE_NAMES:
            raise ValueError(f"cannot store {name!r}: dtype {tensor.dtype} has no safetensors name")
        # contiguous() gives row-major bytes; a tied or sliced tensor is written as its own copy.
        raw = tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": DTYPE_NAMES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for raw in chunks:
            f.write(raw)
    os.replace(tmp, path)
