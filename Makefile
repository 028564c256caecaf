# GPU Rightsizer — developer entry points. `make demo` and `make test` are the two set-up commands.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: venv tools cluster-up cluster-down cluster-status demo test test-unit lint crds bench bench-live clean

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

tools:
	hack/tools.sh

cluster-up: venv
	hack/cluster.sh up

cluster-down:
	hack/cluster.sh down

cluster-status:
	hack/cluster.sh status

demo: venv
	hack/demo.sh

test: venv
	hack/test.sh

test-unit: venv
	$(VENV)/bin/pytest -m unit

crds: venv
	$(VENV)/bin/rightsizer crds --docs docs/api.md
	$(VENV)/bin/rightsizer crds --output-dir helm/gpu-rightsizer/crds

bench: venv
	$(VENV)/bin/python -m benchmarks.run
	$(VENV)/bin/python -m benchmarks.reconcile
	$(VENV)/bin/python -m benchmarks.history

# The real operator on a local cluster of its own (rightsizer-bench): 500 GPU nodes, 1,000 GPUWorkloads,
# 5,000 pods, about 15 minutes. Pass options with ARGS, e.g. `make bench-live ARGS="--scale 0.1"`.
bench-live: venv
	$(VENV)/bin/python -m benchmarks.live $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
