"""Our safetensors reader/writer against the reference `safetensors` package, both ways,
and clear errors on damaged files."""

import json
import struct

import pytest
import torch

from minibert.safetensors import DTYPES, load_file, save_file


def sample_tensors():
    g = torch.Generator().manual_seed(0)
    tensors = {
        "f32": torch.randn(3, 5, generator=g),
        "f64": torch.randn(7, generator=g, dtype=torch.float64),
        "f16": torch.randn(2, 3, generator=g).half(),
        "bf16": torch.randn(4, 1, 2, generator=g).bfloat16(),
        "i64": torch.arange(-3, 9).view(3, 4),
        "i32": torch.tensor([1, -2, 3], dtype=torch.int32),
        "i16": torch.tensor([[5]], dtype=torch.int16),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "transposed": torch.randn(3, 4, generator=g).t(),  # not contiguous
    }
    assert {DTYPES[name] for name in DTYPES} <= {t.dtype for t in tensors.values()}
    return tensors


def assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert torch.equal(a[name], b[name]), name


def test_round_trip(tmp_path):
    tensors = sample_tensors()
    save_file(tensors, tmp_path / "x.safetensors", metadata={"format": "pt"})
    assert_same(load_file(tmp_path / "x.safetensors"), tensors)
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed away


def test_reference_reads_ours_and_we_read_the_reference(tmp_path):
    from safetensors.torch import load_file as reference_load, save_file as reference_save
    tensors = sample_tensors()
    save_file(tensors, tmp_path / "ours.safetensors", metadata={"format": "pt"})
    assert_same(reference_load(tmp_path / "ours.safetensors"), tensors)
    contiguous = {k: v.contiguous() for k, v in tensors.items()}
    reference_save(contiguous, tmp_path / "theirs.safetensors", metadata={"format": "pt"})
    assert_same(load_file(tmp_path / "theirs.safetensors"), tensors)


def test_header_is_8_byte_aligned(tmp_path):
    save_file({"a": torch.ones(3)}, tmp_path / "a.safetensors")
    (header_size,) = struct.unpack("<Q", (tmp_path / "a.safetensors").read_bytes()[:8])
    assert header_size % 8 == 0


def write_raw(path, header, data):
    header_bytes = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(header_bytes)) + header_bytes + data)


@pytest.mark.parametrize("damage, message", [
    ("truncate_data", "outside"),
    ("truncate_header", "header claims"),
    ("tiny", "shorter than the 8-byte"),
    ("bad_json", "not valid JSON"),
    ("bad_dtype", "known dtype"),
    ("wrong_size", "needs 24 bytes"),
    ("gap", "expected 0"),
    ("trailing", "trailing bytes"),
])
def test_damaged_files_give_clear_errors(tmp_path, damage, message):
    path = tmp_path / "bad.safetensors"
    good = {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}
    data = bytes(24)
    if damage == "truncate_data":
        save_file({"a": torch.ones(2, 3)}, path)
        path.write_bytes(path.read_bytes()[:-5])
    elif damage == "truncate_header":
        save_file({"a": torch.ones(2, 3)}, path)
        path.write_bytes(path.read_bytes()[:20])
    elif damage == "tiny":
        path.write_bytes(b"\x01\x02")
    elif damage == "bad_json":
        path.write_bytes(struct.pack("<Q", 4) + b"{abc")
    elif damage == "bad_dtype":
        write_raw(path, {"a": {"dtype": "F7", "shape": [2, 3], "data_offsets": [0, 24]}}, data)
    elif damage == "wrong_size":
        write_raw(path, {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}}, data)
    elif damage == "gap":
        write_raw(path, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8))
    elif damage == "trailing":
        write_raw(path, good, data + bytes(4))
    with pytest.raises(ValueError, match=message):
        load_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_file(tmp_path / "nope.safetensors")


# ---- headers that are valid JSON but not a valid safetensors header; the reference refuses them too ----

@pytest.mark.parametrize("entry, expected", [
    ({"dtype": "F32", "shape": None, "data_offsets": [0, 24]}, "a shape is a list of non-negative integers"),
    ({"dtype": "F32", "shape": [2, "3"], "data_offsets": [0, 24]}, "a shape is a list of non-negative integers"),
    ({"dtype": "F32", "shape": [True, 6], "data_offsets": [0, 24]}, "a shape is a list of non-negative integers"),
    ({"dtype": "F32", "shape": [-2, -3], "data_offsets": [0, 24]}, "a shape is a list of non-negative integers"),
    ({"dtype": "F32", "shape": [2, 3], "data_offsets": [0.0, 24.0]}, "must be two non-negative integers"),
    ({"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24, 48]}, "must be two non-negative integers"),
    ({"dtype": "F32", "shape": [2, 3], "data_offsets": None}, "must be two non-negative integers"),
    ({"dtype": ["F32"], "shape": [2, 3], "data_offsets": [0, 24]}, "unknown dtype"),
    ({"shape": [2, 3], "data_offsets": [0, 24]}, "lacks a dtype"),
    ("F32", "lacks a dtype"),
])
def test_malformed_header_entries_are_named(tmp_path, entry, expected):
    from safetensors.torch import load_file as reference_load
    path = tmp_path / "bad.safetensors"
    write_raw(path, {"a": entry}, bytes(24))
    with pytest.raises(ValueError) as error:
        load_file(path)
    message = str(error.value)
    assert str(path) in message and "'a'" in message and expected in message and "\n" not in message, message
    with pytest.raises(Exception):
        reference_load(path)


@pytest.mark.parametrize("metadata", ["pt", {"format": 1}, ["format"]])
def test_metadata_that_is_not_a_dict_of_strings_is_refused_as_the_reference_does(tmp_path, metadata):
    from safetensors.torch import load_file as reference_load
    path = tmp_path / "bad.safetensors"
    write_raw(path, {"__metadata__": metadata, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(8))
    with pytest.raises(ValueError, match="__metadata__ must map names to strings"):
        load_file(path)
    with pytest.raises(Exception):
        reference_load(path)


@pytest.mark.parametrize("dtype, name", [
    (torch.uint16, "U16"), (torch.uint32, "U32"), (torch.uint64, "U64"),
    (torch.float8_e4m3fn, "F8_E4M3"), (torch.float8_e5m2, "F8_E5M2"), (torch.complex64, "C64"),
])
def test_a_valid_file_with_a_dtype_we_do_not_read_says_so(tmp_path, dtype, name):
    from safetensors.torch import save_file as reference_save
    path = tmp_path / "model.safetensors"
    reference_save({"ok": torch.ones(2), "odd": torch.zeros(3).to(dtype)}, path)
    with pytest.raises(ValueError) as error:
        load_file(path)
    message = str(error.value)
    assert f"{path}: tensor 'odd' has dtype {name}, which minibert does not read" in message, message
    assert "F32" in message and "damaged" not in message and "\n" not in message
