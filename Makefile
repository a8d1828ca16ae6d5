# Two commands do all set-up on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
GRAFT := $(VENV)/bin/graft
STAMP := $(VENV)/.installed
# torch pins: these install from the local wheel cache; other versions download gigabytes.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test lint bench-planner bench-sim bench-runtime calibrate regenerate-models clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(GRAFT) demo -o demo-out

test: $(STAMP)
	$(PY) -m ruff check graft tests bench
	timeout 1500 $(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check graft tests bench

bench-planner: $(STAMP)
	$(PY) bench/planner_bench.py --output bench/results/planner.md --optimal-time-limit 20

bench-sim: $(STAMP)
	$(PY) bench/sim_bench.py --output bench/results/sim.md

bench-runtime: $(STAMP)
	$(PY) bench/runtime_bench.py --output bench/results/runtime.md

calibrate: $(STAMP)
	$(GRAFT) calibrate

regenerate-models: $(STAMP)
	$(GRAFT) models --regenerate

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
