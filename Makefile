# GPU Rightsizer — developer entry points. `make demo` and `make test` are the two set-up commands.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: venv tools cluster-up cluster-down cluster-status demo test test-unit lint crds bench bench-live bench-karpenter clean

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
	$(VENV)/bin/python -m benchmarks.scenarios
	$(VENV)/bin/python -m benchmarks.reconcile
	$(VENV)/bin/python -m benchmarks.history

# The real operator on a local cluster of its own (rightsizer-bench): 500 GPU nodes, 1,000 GPUWorkloads,
# 5,000 pods, about 15 minutes. Pass options with ARGS, e.g. `make bench-live ARGS="--scale 0.1"`.
bench-live: venv
	$(VENV)/bin/python -m benchmarks.live $(ARGS)

# Consolidation side by side with the real Karpenter on its own local cluster
# (rightsizer-bench-karpenter): two fleets of about 64 GPU nodes, each consolidated by Karpenter alone
# and by GPU Rightsizer beside it. Quick run: `make bench-karpenter ARGS="--scale 0.25 --quiet 180"`.
bench-karpenter: venv
	$(VENV)/bin/python -m benchmarks.karpenter $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
