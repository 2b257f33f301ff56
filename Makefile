# Two set-up-free commands on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# Exact pins for a fresh machine (pyproject.toml admits torch >= 2.11 / torchvision >= 0.26).
TORCH   := torch==2.14.1 torchvision==0.29.1
export OMP_NUM_THREADS ?= 2
export MPLBACKEND := Agg

.PHONY: install demo test lint format bench figures clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/greedyprune verify two-layer --preset quick --out runs/demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	HYPOTHESIS_PROFILE=ci $(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_kernel.py
	$(BIN)/python benchmarks/bench_prune.py

figures: $(STAMP)
	@set -e; for f in figures/fig_*.py; do echo "== $$f"; $(BIN)/python $$f; done

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .hypothesis
