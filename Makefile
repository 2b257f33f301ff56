# Two set-up-free commands on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# Exact pins for a fresh machine (pyproject.toml admits torch >= 2.11 / torchvision >= 0.26).
TORCH   := torch==2.14.1 torchvision==0.29.1
export OMP_NUM_THREADS ?= 2
export MPLBACKEND := Agg

.PHONY: install demo test lint format bench figures clean mutate mutate-sample gpu-check

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

# The checks that need a CUDA GPU (under 8 minutes; never run by CI): the CUDA tests, the kernel
# benchmark and the batched-vs-sequential benchmark at 224 px, JSON in benchmarks/results/. A GPU
# machine usually has torch already: GPU_PY=python3 runs it there without the virtual environment.
GPU_PY ?= $(BIN)/python
gpu-check:
	$(GPU_PY) benchmarks/gpu_check.py

figures: $(STAMP)
	@set -e; for f in figures/fig_*.py; do echo "== $$f"; $(BIN)/python $$f; done

# Mutation testing of greedyprune/select and greedyprune/theory against their fast tests: not part
# of `make test` or CI ([tool.mutmut] in pyproject.toml; results in mutants/, git-ignored). A full
# run takes hours on two cores; narrow it with MUTANTS, e.g.
# `make mutate MUTANTS='greedyprune.select._greedy*'`. Survivors: `.venv/bin/mutmut results`,
# then `.venv/bin/mutmut show NAME`.
MUTANTS      ?=
MUTATE_JOBS  ?= 2
mutate: $(STAMP)
	$(BIN)/pip install -q mutmut==3.8.1
	set -f; nice -n 10 $(BIN)/mutmut run --max-children $(MUTATE_JOBS) $(MUTANTS)
	$(BIN)/mutmut export-cicd-stats && cat mutants/mutmut-cicd-stats.json

# The score estimated from a uniform random sample of mutants (SAMPLE of them, seed MUTATE_SEED),
# with a 95% interval and the survivors' names: tools/mutation_sample.py.
SAMPLE      ?= 600
MUTATE_SEED ?= 0
mutate-sample: $(STAMP)
	$(BIN)/pip install -q mutmut==3.8.1
	nice -n 10 $(BIN)/python tools/mutation_sample.py --sample $(SAMPLE) --seed $(MUTATE_SEED) --jobs $(MUTATE_JOBS)

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .hypothesis
