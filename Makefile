# modelpilot developer targets. `make install && make test` on a fresh machine.
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: help install tools test test-unit test-cluster lint format manifests cluster clean bench bench-full

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

install: ## install modelpilot with its test and dev extras (editable)
	$(PYTHON) -m pip install -e '.[test,dev]'

tools: ## build the pinned control-plane binaries into ~/.cache/modelpilot/tools (cached)
	$(PYTHON) -m modelpilot.sim.tools

test: tools lint ## lint, then both test tiers: unit and cluster
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test-unit: ## the unit tier only (no cluster)
	$(PYTHON) -m pytest -m 'not cluster' $(PYTEST_ARGS)

test-cluster: tools ## the cluster tier only
	$(PYTHON) -m pytest -m cluster $(PYTEST_ARGS)

lint: ## ruff
	$(PYTHON) -m ruff check operator tests bench
	$(PYTHON) -m ruff format --check operator tests bench

format: ## ruff format + fixes
	$(PYTHON) -m ruff format operator tests
	$(PYTHON) -m ruff check --fix operator tests

manifests: ## regenerate the CRD from modelpilot.api
	$(PYTHON) -m modelpilot.cli crd > manifests/crd/modelpilot.io_managedmodels.yaml
	cp manifests/crd/modelpilot.io_managedmodels.yaml charts/modelpilot/crds/

cluster: tools ## run the local control plane + kwok GPU pool in the foreground
	$(PYTHON) -m modelpilot.sim

clean: ## remove build and test leftovers (not the tools cache)
	rm -rf build dist *.egg-info operator/*.egg-info .pytest_cache .ruff_cache

bench: tools ## quick benchmark profile (N = 50, idle 60 s); results in bench/results/
	$(PYTHON) -m bench.run --profile quick

bench-full: tools ## full benchmark profile (N = 50 and 200, idle 5 min, 1,000 models)
	$(PYTHON) -m bench.run --profile full
