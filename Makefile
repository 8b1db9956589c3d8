# Twitch Chat Ingestor — the two commands a newcomer needs are `make up` and `make test`.
# Everything else is listed by `make help`.

SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
# One cargo target dir shared by every clone on this machine (CI clones fresh each time).
export CARGO_TARGET_DIR ?= $(HOME)/.cache/tci/target
export TCI_STACK_DIR ?= $(ROOT)/.stack
CARGO ?= cargo
PROFILE ?= release
BIN := $(CARGO_TARGET_DIR)/$(PROFILE)
STACK := $(ROOT)/dev/stack.sh
RUN := $(ROOT)/dev/run.sh

.PHONY: help deps build up down status logs test test-unit lint fmt bench bench-ingest bench-api bench-storage bench-system clean-stack

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

deps: ## Install what a fresh machine lacks (Debian build packages, Maven artifacts)
	@$(ROOT)/dev/install-deps.sh
	@$(STACK) fetch

build: deps ## Build every service (release)
	$(CARGO) build --workspace --release --bins

up: build ## Start the stack, create topics, register schemas, migrate, start every service
	@$(STACK) start
	@$(BIN)/tci setup
	@$(RUN) start
	@$(RUN) status

down: ## Stop every service and the stack (leaves no process)
	@$(RUN) stop
	@$(STACK) stop

status: ## What is running
	@$(STACK) status || true
	@$(RUN) status || true

logs: ## Tail the services' logs
	@tail -n 50 -f $(TCI_STACK_DIR)/logs/*.log

test: deps ## Run every test: fmt, clippy, unit tests, integration tests against the real stack
	@$(ROOT)/dev/test.sh

test-unit: ## Unit tests only (no servers)
	$(CARGO) test --workspace --exclude integration-tests

lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

bench: deps ## Criterion benchmarks of the hot paths (IRC parse vs twitch-irc, parse+record+Avro, message JSON rendered from a stored line vs escaping a stored JSON)
	$(CARGO) bench -p chat-listener --bench parse
	$(CARGO) bench -p tci-irc --bench render

bench-ingest: deps ## Pipeline load run: chat-ingestor vs a raw CQL writer, same rows, same run (needs the stack)
	@$(STACK) start
	bench/ingest/run.sh

bench-api: deps ## API load run: wrk on limit=100 pages vs direct CQL single-page queries (needs the stack)
	@$(STACK) start
	bench/api/run.sh

bench-storage: deps ## Bytes on disk per message per chat table after flush+compact (KEYSPACE=tci for the demo's)
	@$(STACK) start
	bench/storage/run.sh $(if $(KEYSPACE),--keyspace $(KEYSPACE))

bench-system: deps ## Whole pipeline under stepped load (sim + 5 services + stack): report and plots in bench/system/results/
	bench/system/run.sh

clean-stack: ## Stop the stack and delete its data and logs
	@$(RUN) stop || true
	@$(STACK) clean

.PHONY: cluster-up cluster-down
cluster-up: ## Start a local Kubernetes control plane (etcd, API server, kwok node; builds it on first use)
	@$(ROOT)/dev/cluster.sh start
	@echo "use it (kubectl, helm):"; $(ROOT)/dev/cluster.sh env

cluster-down: ## Stop the local Kubernetes control plane (leaves no process)
	@$(ROOT)/dev/cluster.sh stop
