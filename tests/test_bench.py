"""The benchmarks run: each at a tiny size on the CPU, printing the figures RESULTS.md quotes."""

import contextlib
import importlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from data_paths import require_data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # the benchmarks, for run_bench


def run_bench(script, *arguments, own_process=False):
    """What bench/<script>.py prints. Run here by its main(arguments), which spares the seconds a
    new process spends importing torch and the reference libraries; `own_process` for a run
    whose compiler caches must start empty."""
    if own_process:
        done = subprocess.run([sys.executable, f"bench/{script}.py", *arguments], cwd=ROOT, capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr
        return done.stdout
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        importlib.import_module(script).main(list(arguments))
    return printed.getvalue()


def bench_mlm_step(*arguments, own_process=False):
    return run_bench("bench_mlm_step", "--preset=tiny", "--batch_size=4", "--seq_len=32", "--steps=2", "--warmup=1",
                     "--threads=1", *arguments, own_process=own_process)


def test_bench_mlm_step_times_both_libraries_and_prints_their_ratio():
    out = bench_mlm_step()
    rates = dict(re.findall(r"^\s+(minibert|transformers)\s+(\d+) tokens/s", out, flags=re.M))
    assert set(rates) == {"minibert", "transformers"} and all(int(rate) > 0 for rate in rates.values()), out
    assert re.search(r"ratio minibert / transformers: \d+\.\d\dx", out), out


def test_bench_mlm_step_dropout_and_kernel_profile():
    out = bench_mlm_step("--dropout=0", "--profile=true")
    assert " dropout=0.0 " in out, out
    for name in ("minibert", "transformers"):  # kernel by kernel: sorted by self time, not by nested totals
        assert f"profile of 3 {name} steps, by self_cpu_time_total:" in out, out
    assert "aten::addmm" in out or "aten::mm" in out, out


@pytest.mark.slow
@pytest.mark.parametrize("mode, scope", [("default", "step"), ("reduce-overhead", "step"), ("default", "block")])
def test_bench_mlm_step_compiled(mode, scope):
    # reduce-overhead's CUDA graphs need a GPU; on the CPU the mode still compiles the one graph.
    # scope=block: the tiny preset's two blocks share one compiled graph.
    out = bench_mlm_step("--compile=true", f"--compile_mode={mode}", f"--compile_scope={scope}", own_process=True)
    assert f"compile=true ({mode}, {scope})" in out and "ratio minibert / transformers" in out, out
    assert re.search(r"minibert compiled to 1 graph\(s\), 0 graph break\(s\); its first step \(the compile\) took \d+ s",
                     out), out


def test_bench_encode_times_both_libraries_on_the_same_vectors(minilm_dir):
    require_data("sts/stsbenchmark/sts-train.csv")
    out = run_bench("bench_encode", "--device=cpu", "--sentences=40", "--batch_size=8", "--repeats=1", "--threads=1")
    assert float(re.search(r"min cosine (\d\.\d+)", out)[1]) >= 0.99999, out
    assert re.search(r"ratio minibert / sentence-transformers: \d+\.\d\dx", out), out
    ours, reference, real = map(int, re.search(r"minibert (\d+), sentence-transformers (\d+) \(without padding (\d+)\)",
                                               out).groups())
    assert real < ours < reference, out  # sorted by tokens, nothing pads less


def test_bench_cpu_attention_compares_the_two_backends_by_length():
    out = run_bench("bench_cpu_attention", "--lengths=4,9", "--batch_size=2", "--repeats=2", "--threads=1")
    rows = re.findall(r"T=\s*(\d+) (no mask|padding mask).*math is (\d+\.\d\d)x as fast", out)
    assert [(T, mask) for T, mask, _ in rows] == [("4", "no mask"), ("4", "padding mask"), ("9", "no mask"),
                                                  ("9", "padding mask")], out


def test_bench_gpu_attention_times_each_kernel_or_says_it_needs_cuda():
    import torch
    if not torch.cuda.is_available():  # CI: the one line a user without a GPU gets
        with pytest.raises(SystemExit, match="no CUDA device"):
            run_bench("bench_gpu_attention")
        return
    out = run_bench("bench_gpu_attention", "--batch_size=2", "--repeats=2", "--calls_per_timing=2")
    assert re.search(r"^\s+flash\s+\d+\.\d+ ms per layer", out, flags=re.M), out


def test_bench_mlm_step_uses_the_attention_kernel_it_is_given(capsys):
    import torch
    out = bench_mlm_step("--sdpa_backend=math")
    assert " attention=math " in out, out
    assert torch.backends.cuda.flash_sdp_enabled()  # only minibert's step chose the kernel: nothing left switched off
    with pytest.raises(SystemExit):  # a CPU has no memory-efficient kernel: one line, before any model is built
        bench_mlm_step("--sdpa_backend=efficient")
    assert "--sdpa_backend=efficient: cpu has no such kernel for float32 heads of" in capsys.readouterr().err
    assert torch.backends.cuda.mem_efficient_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()
    # Several kernels: one model each, alternating in the same run.
    out = bench_mlm_step("--sdpa_backend=auto,math")
    for name in ("minibert[auto]", "minibert[math]"):
        assert re.search(rf"^\s+{re.escape(name)}\s+\d+ tokens/s", out, flags=re.M), out
        assert re.search(rf"ratio {re.escape(name)} / transformers: \d+\.\d\dx", out), out
    with pytest.raises(SystemExit):
        bench_mlm_step("--sdpa_backend=auto,fast")  # argparse's one line names the setting


def test_bench_mlm_step_rounds_the_residual_stream_only_where_asked():
    import torch
    from bench_mlm_step import RoundedLayerNorm, round_residual_stream
    from minibert.config import BertConfig
    from minibert.heads import MaskedLanguageModelingHead
    from minibert.transformer_with_heads import TransformerWithHeads
    config = BertConfig.from_preset("tiny", vocab_size=100)
    model = TransformerWithHeads(config)
    model.add_head("mlm", MaskedLanguageModelingHead(config))
    input_ids = torch.randint(5, 100, (2, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.encoder(input_ids).dtype == torch.float32  # minibert's own: float32, as transformers
    before = {name: p.clone() for name, p in model.named_parameters()}
    round_residual_stream(model)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 * config.num_hidden_layers + 2 and all(type(m) is RoundedLayerNorm for m in norms)
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.encoder(input_ids).dtype == torch.bfloat16
    assert model.encoder(input_ids).dtype == torch.float32  # without autocast: unchanged
    out = bench_mlm_step("--dtype=bfloat16", "--residual=float32,autocast")
    for name in ("minibert[float32 residual]", "minibert[autocast residual]"):
        assert re.search(rf"ratio {re.escape(name)} / transformers: \d+\.\d\dx", out), out


@pytest.mark.slow
def test_bench_mlm_step_compiles_each_attention_kernel_into_a_graph_of_its_own(tmp_path, monkeypatch):
    """In work session 16 every "flash" run on the GPU ran the graph that torch's own choice had compiled and
    cached on disk; and with two models in one process, the second ran the first's graph. A graph that calls the
    math kernel holds no fused kernel's operation (dropout 0: the CPU's fused kernel takes no dropout), so a
    profile shows which one ran."""
    def profile_of(out, name):
        return out.split(f"profile of 3 {name} steps")[1].split("profile of 3")[0]

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    fused = "flash_attention_for_cpu"
    for scope in ("step", "block"):  # block: the same graph whatever the kernel, as far as the cache can see
        out = bench_mlm_step("--compile=true", f"--compile_scope={scope}", "--dropout=0", "--profile=true",
                             own_process=True)  # torch's choice, compiled and cached
        assert fused in profile_of(out, "minibert"), out
        out = bench_mlm_step("--sdpa_backend=math", "--compile=true", f"--compile_scope={scope}", "--dropout=0",
                             "--profile=true", own_process=True)
        assert fused not in profile_of(out, "minibert"), out
    out = bench_mlm_step("--sdpa_backend=auto,math", "--compile=true", "--dropout=0", "--profile=true",
                         own_process=True)
    assert "minibert compiled to 2 graph(s), 0 graph break(s)" in out, out
    assert fused in profile_of(out, "minibert[auto]") and fused not in profile_of(out, "minibert[math]"), out
    out = bench_mlm_step("--residual=float32,autocast", "--dtype=bfloat16", "--compile=true", own_process=True)
    assert "minibert compiled to 2 graph(s), 0 graph break(s)" in out, out
