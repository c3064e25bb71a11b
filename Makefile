# modelpilot developer targets. `make install && make test` on a fresh machine.
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: help install tools test test-unit test-cluster test-cluster-busy fault lint format manifests cluster clean bench bench-full model-store demo kind-e2e helm-lint image
KIND_VERSION ?= v0.31.0

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

install: ## install modelpilot with its test and dev extras, and the dev package (editable)
	$(PYTHON) -m pip install -e '.[test,dev]' -e ./devcluster

tools: ## build the pinned control-plane binaries into ~/.cache/modelpilot/tools (cached)
	$(PYTHON) -m modelpilot_dev tools

test: tools lint ## lint, then both test tiers: unit and cluster (not the kind tier)
	$(PYTHON) -m pytest -m 'not kind' $(PYTEST_ARGS)

test-unit: ## the unit tier only (no cluster)
	$(PYTHON) -m pytest -m 'not cluster and not kind' $(PYTEST_ARGS)

test-cluster: tools ## the cluster tier only
	$(PYTHON) -m pytest -m cluster $(PYTEST_ARGS)

test-cluster-busy: tools ## the cluster tier with every core kept busy by CPU burners (finds races)
	$(PYTHON) -m modelpilot_dev busy -- $(PYTHON) -m pytest -m cluster $(PYTEST_ARGS)

fault: tools ## the fault suite's long form (kill -9 x10, apiserver restart, 4 min churn); prints its figures
	MODELPILOT_FAULT_SCALE=full $(PYTHON) -m pytest -m fault $(PYTEST_ARGS)

LINTED = operator devcluster tests bench hack

lint: ## ruff, then mypy (strict on the operator's layers)
	$(PYTHON) -m ruff check $(LINTED)
	$(PYTHON) -m ruff format --check $(LINTED)
	$(PYTHON) -m mypy

format: ## ruff format + fixes
	$(PYTHON) -m ruff format $(LINTED)
	$(PYTHON) -m ruff check --fix $(LINTED)

manifests: tools ## regenerate the CRD from modelpilot.api, then the raw install manifests from the chart
	$(PYTHON) -m modelpilot.cli crd > manifests/crd/modelpilot.io_managedmodels.yaml
	cp manifests/crd/modelpilot.io_managedmodels.yaml charts/modelpilot/crds/
	$(PYTHON) hack/gen-install.py

helm-lint: tools ## helm lint --strict, default and namespaced values
	$$($(PYTHON) -m modelpilot_dev tools --path helm) lint --strict charts/modelpilot --kube-version 1.36.3
	$$($(PYTHON) -m modelpilot_dev tools --path helm) lint --strict charts/modelpilot --kube-version 1.36.3 --set 'watchNamespaces={a,b}'

image: ## build the operator image (needs Docker)
	docker build -t modelpilot:0.1.0 .

model-store: ## train the sample models (iris v1, v2; scikit-learn) into model-store/
	$(PYTHON) -m modelpilot.cli store build

demo: tools ## roll iris v1 -> v2 on the local control plane, then stop it all (no Docker)
	$(PYTHON) -m modelpilot_dev demo

kind-e2e: tools ## real KServe + Envoy Gateway + the chart in a kind cluster (needs Docker)
	$(PYTHON) -m pip install -e '.[test,kind]'
	KIND_VERSION=$(KIND_VERSION) $(PYTHON) -m pytest -m kind $(PYTEST_ARGS)

cluster: tools ## run the local control plane + kwok GPU pool in the foreground
	$(PYTHON) -m modelpilot_dev cluster

clean: ## remove build and test leftovers (not the tools cache)
	rm -rf build dist *.egg-info operator/*.egg-info devcluster/*.egg-info devcluster/build .pytest_cache .ruff_cache .mypy_cache

bench: tools ## quick benchmark profile (N = 50 x3 against the ideal controller, idle 60 s); results in bench/results/
	$(PYTHON) -m bench.run --profile quick

bench-full: tools ## full benchmark profile (N = 50 and 200 x3, idle 5 min, 1,000 models and a storm on them, 10,000 at rest, 2,000 on 1/2/4 shards; hours here)
	$(PYTHON) -m bench.run --profile full
