# Two commands do all set-up on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
GRAFT := $(VENV)/bin/graft
STAMP := $(VENV)/.installed
# torch pins: these install from the local wheel cache; other versions download gigabytes.
# The CUDA build (about 5 GB installed): PyPI has no CPU build of torchvision for Linux, and
# its CUDA torchvision does not load on a CPU torch (README, "Set-up").
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# A line every few seconds while a long step runs.
HEARTBEAT := bash scripts/heartbeat.sh
# Benchmarks write under out/bench/ (ignored by git); UPDATE=1 rewrites bench/results/.
RESULTS := $(if $(UPDATE),bench/results,out/bench)
# Third-party data beside the checkout (README, "Data"): override with TRACES=... / DATA=...
TRACES ?= ../shared/data/traces
DATA ?=

.PHONY: setup demo test lint bench-planner bench-sim bench-scale bench-runtime calibrate regenerate-models clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "installing $(TORCH_PINS) (CUDA build, about 5 GB; minutes)" >&2
	$(HEARTBEAT) "installing torch" $(PY) -m pip install --quiet $(TORCH_PINS)
	@echo "installing graft, its dev tools and Ray (for the cluster tests; about 500 MB)" >&2
	$(HEARTBEAT) "installing graft" $(PY) -m pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(GRAFT) demo -o demo-out

test: $(STAMP)
	$(PY) -m ruff check graft tests bench
	timeout 1500 $(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check graft tests bench

bench-planner: $(STAMP)
	$(PY) bench/planner_bench.py --output $(RESULTS)/planner.md --optimal-time-limit 20

bench-sim: $(STAMP)
	$(PY) bench/sim_bench.py --trace-root $(TRACES) --output $(RESULTS)/sim.md

bench-scale: $(STAMP)
	$(PY) bench/scale_bench.py --output $(RESULTS)/scale.md
	$(PY) bench/ray_nodes_bench.py --output $(RESULTS)/scale.md

bench-runtime: $(STAMP)
	$(PY) bench/runtime_bench.py --output $(RESULTS)/runtime.md

calibrate: $(STAMP)
	$(GRAFT) calibrate $(if $(DATA),--data-dir $(DATA))

regenerate-models: $(STAMP)
	$(GRAFT) models --regenerate

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
