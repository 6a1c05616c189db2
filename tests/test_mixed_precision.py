"""--dtype and --compile in the three training scripts, checked on the CPU at a tiny size.

bfloat16 autocast runs on the CPU too, so CI (which has no GPU) checks what a GPU run in
mixed precision does: a few steps train (the loss falls) and stay close to the float32 run,
for every multi-task strategy, GradNorm included."""

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from minibert.training import Precision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_embedder  # noqa: E402
import train_mlm  # noqa: E402
import train_mtl  # noqa: E402
from test_contrastive import write_sts_fixture  # noqa: E402
from test_mtl import write_fixture  # noqa: E402
from test_pretraining import write_corpus  # noqa: E402


def test_auto_is_float32_on_the_cpu_and_bad_names_are_refused():
    assert Precision("auto", torch.device("cpu")).dtype == torch.float32
    assert not Precision("bfloat16", torch.device("cpu")).scaler.is_enabled()
    assert Precision("float16", torch.device("cpu")).scaler.is_enabled()  # float16 needs loss scaling
    with pytest.raises(ValueError, match="--dtype"):
        Precision("fp8", torch.device("cpu"))


def test_autocast_runs_matrix_products_in_the_chosen_dtype_and_losses_in_float32():
    from minibert.heads import TokenClassificationHead
    from conftest import odd_config
    config = odd_config()
    head = TokenClassificationHead(config, 5)
    hidden, labels = torch.randn(3, 7, config.hidden_size), torch.randint(0, 5, (3, 7))
    with Precision("bfloat16", torch.device("cpu")).autocast():
        loss, logits = head(hidden, labels=labels)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32


@pytest.fixture(scope="module")
def mtl_fixture(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("mtl_precision"))


def mtl_losses(fixture_dir, run_dir, strategy, dtype, *extra):
    """Per step, the sum of the task losses (over every phase's log)."""
    train_mtl.main([f"--init={fixture_dir / 'init'}", f"--data_dir={fixture_dir}", f"--run_dir={run_dir}",
                    f"--strategy={strategy}", f"--dtype={dtype}", "--batch_size=4", "--max_steps=10",
                    "--eval_every=10", "--checkpoint_every=10", "--learning_rate=3e-3", "--head_learning_rate=3e-2",
                    "--unfreeze_every=2", "--warmup_fraction=0", "--threads=1", *extra])
    phases = []
    for log in sorted(Path(run_dir).glob("*_log.csv")):
        rows = list(csv.DictReader(open(log)))
        phases.append([sum(float(v) for k, v in row.items() if k.startswith("loss_")) for row in rows])
    return np.sum(phases, axis=0)  # separate: the two models' losses side by side


@pytest.mark.parametrize("strategy, extra", [
    ("frozen", ()), ("joint", ()), ("gradual", ()), ("gradnorm", ()), ("uncertainty", ()), ("separate", ()),
    ("mmoe", ()), ("mmoe", ("--weighting=gradnorm",))], ids=lambda value: value if isinstance(value, str) else "")
def test_every_strategy_trains_in_bfloat16_close_to_float32(mtl_fixture, tmp_path, strategy, extra):
    full = mtl_losses(mtl_fixture, tmp_path / "float32", strategy, "float32", *extra)
    half = mtl_losses(mtl_fixture, tmp_path / "bfloat16", strategy, "bfloat16", *extra)
    assert half[-3:].mean() < half[:3].mean(), half  # it trains
    # bfloat16 keeps 8 bits of mantissa: the losses agree to about 1%, never exactly.
    assert np.allclose(half, full, rtol=0.02), (half, full)
    assert not np.array_equal(half, full)  # autocast really ran in bfloat16


def mlm_log(tmp_path, name, *extra):
    train_mlm.main([f"--corpus={tmp_path / 'corpus.txt'}", "--preset=tiny", "--vocab_size=300", "--max_seq_len=32",
                    "--batch_size=8", "--max_steps=12", "--eval_every=4", "--eval_batches=2", "--checkpoint_every=12",
                    "--learning_rate=2e-3", "--warmup_fraction=0", f"--run_dir={tmp_path / name}",
                    f"--out_dir={tmp_path / name / 'out'}", "--threads=1", *extra])
    rows = list(csv.DictReader(open(tmp_path / name / "log.csv")))
    return np.array([float(row["train_loss"]) for row in rows]), np.array([float(row["eval_loss"]) for row in rows])


def test_train_mlm_in_bfloat16_trains_close_to_float32(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the corpus cache goes to ./.cache
    write_corpus(tmp_path / "corpus.txt")
    train_full, eval_full = mlm_log(tmp_path, "float32", "--dtype=float32")
    train_half, eval_half = mlm_log(tmp_path, "bfloat16", "--dtype=bfloat16", f"--vocab={tmp_path / 'float32' / 'out'}")
    assert train_half[-1] < train_half[0] and eval_half[-1] < eval_half[0]
    assert np.allclose(train_half, train_full, rtol=0.02) and np.allclose(eval_half, eval_full, rtol=0.02)


def test_train_embedder_in_bfloat16_stays_close_to_float32(tmp_path, minilm_dir):
    from minibert.config import BertConfig
    from minibert.tokenizer import WordPieceTokenizer
    from minibert.transformer_with_heads import TransformerWithHeads
    write_sts_fixture(tmp_path / "data")
    tokenizer = WordPieceTokenizer.from_pretrained(minilm_dir)
    torch.manual_seed(0)
    TransformerWithHeads(BertConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size)).save_pretrained(tmp_path / "init")
    tokenizer.save_pretrained(tmp_path / "init")
    losses = {}
    for dtype in ("float32", "bfloat16"):
        train_embedder.main([f"--init={tmp_path / 'init'}", "--objective=cosent", f"--data_dir={tmp_path / 'data'}",
                             "--batch_size=8", "--max_steps=4", "--eval_every=1", f"--dtype={dtype}",
                             f"--run_dir={tmp_path / dtype}", f"--out_dir={tmp_path / dtype / 'model'}",
                             "--learning_rate=1e-3", "--threads=1"])
        rows = list(csv.DictReader(open(tmp_path / dtype / "log.csv")))[1:]  # row 0: before training
        losses[dtype] = np.array([float(row["train_loss"]) for row in rows])
    assert np.allclose(losses["bfloat16"], losses["float32"], rtol=0.05, atol=0.05), losses
    assert not np.array_equal(losses["bfloat16"], losses["float32"])


@pytest.fixture(params=["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def compile_backend(request, monkeypatch):
    """--compile=true through torch.compile. The default run traces with the aot_eager
    backend (TorchDynamo graph capture and AOTAutograd, seconds on the CPU); the slow run
    uses inductor, torch's default code generator (minutes on the CPU: it compiles C++)."""
    if request.param != "inductor":
        compile = torch.compile
        monkeypatch.setattr(torch, "compile", lambda *args, **kwargs: compile(*args, **kwargs, backend=request.param))
    torch._dynamo.reset()
    yield request.param
    torch._dynamo.reset()


def test_compile_works_in_all_three_scripts(tmp_path, monkeypatch, mtl_fixture, compile_backend):
    monkeypatch.chdir(tmp_path)
    write_corpus(tmp_path / "corpus.txt")
    train_eager, eval_eager = mlm_log(tmp_path, "eager", "--max_steps=4")
    train_compiled, eval_compiled = mlm_log(tmp_path, "compiled", "--max_steps=4", "--compile=true",
                                            f"--vocab={tmp_path / 'eager' / 'out'}")
    # Dropout draws its masks differently once compiled, so the training losses differ a
    # little; the held-out loss (no dropout) after the same steps stays close.
    assert np.allclose(eval_compiled, eval_eager, rtol=0.02), (eval_compiled, eval_eager)

    losses = mtl_losses(mtl_fixture, tmp_path / "mtl", "gradnorm", "float32", "--compile=true", "--max_steps=4")
    assert np.isfinite(losses).all() and len(losses) == 4

    write_sts_fixture(tmp_path / "data")
    train_embedder.main([f"--init={mtl_fixture / 'init'}", "--objective=cosent", f"--data_dir={tmp_path / 'data'}",
                         "--batch_size=4", "--max_steps=2", "--eval_every=2", "--compile=true",
                         f"--run_dir={tmp_path / 'embedder'}", f"--out_dir={tmp_path / 'embedder' / 'model'}",
                         "--threads=1"])
    assert (tmp_path / "embedder" / "model" / "model.safetensors").is_file()
