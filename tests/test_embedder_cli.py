"""`python -m minibert.embedder` as a user meets it: a setting it cannot use is refused
before the model is loaded and the similarities printed, in one line that names it; what it
writes is where it says."""

import subprocess
import sys

import pytest

from minibert import embedder
from minibert.tokenizer import WordPieceTokenizer
from minibert.transformer_with_heads import TransformerWithHeads

from conftest import odd_config


@pytest.fixture
def model_dir(tmp_path):
    tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "plane", "is", "taking", "off"])
    TransformerWithHeads(odd_config(vocab_size=tokenizer.vocab_size)).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


@pytest.mark.parametrize("plot, expected", [
    # matplotlib's "Format 'txt' is not supported", after the model had loaded
    ("map.txt", "--plot {tmp}/map.txt: matplotlib cannot write a .txt image; give a file name ending in .png"),
    # matplotlib wrote map.png, and the command said it wrote "map"
    ("map", "--plot {tmp}/map: matplotlib cannot write an image without a suffix; give a file name ending in .png"),
    # it wrote {tmp}.png beside the folder
    ("", "--plot {tmp} is a folder; give a file name ending in .png"),
])
def test_a_plot_path_it_cannot_write_is_refused_before_loading_the_model(tmp_path, capsys, plot, expected):
    with pytest.raises(SystemExit) as stopped:
        embedder.main(["--model", str(tmp_path / "no_model"), "--plot", str(tmp_path / plot) if plot else str(tmp_path)])
    assert stopped.value.code == 2
    assert expected.replace("{tmp}", str(tmp_path)) in capsys.readouterr().err
    assert not list(tmp_path.glob("map*"))


def test_sts_without_its_data_is_refused_before_loading_the_model(tmp_path, capsys):
    # found after the model had loaded and the similarities (and the plot) were done
    with pytest.raises(SystemExit):
        embedder.main(["--model", str(tmp_path / "no_model"), "--sts", "dev", "--data_dir", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert f"--sts dev: {tmp_path / 'nowhere' / 'sts' / 'stsbenchmark' / 'sts-dev.csv'} not found" in err


def test_a_bad_split_and_a_missing_model_are_one_line_each(tmp_path, model_dir):
    def run(*arguments):
        return subprocess.run([sys.executable, "-m", "minibert.embedder", *arguments], capture_output=True, text=True)

    finished = run("--model", str(model_dir), "--sts", "validation")
    assert finished.returncode == 2 and "invalid choice: 'validation' (choose from 'train', 'dev', 'test')" in finished.stderr
    finished = run("--model", str(tmp_path / "no_model"))
    assert finished.returncode == 2 and "Traceback" not in finished.stderr
    assert f"error: model directory {tmp_path / 'no_model'} does not exist" in finished.stderr


def test_the_plot_is_written_where_the_command_says(tmp_path, model_dir, capsys):
    png = tmp_path / "map.png"
    png.write_bytes(b"an old map")  # a figure is made to be redrawn: it is replaced
    embedder.main(["--model", str(model_dir), "--plot", str(png), "a plane is taking off", "a plane"])
    assert f"2-D projection written to {png}" in capsys.readouterr().out
    assert png.read_bytes().startswith(b"\x89PNG")
