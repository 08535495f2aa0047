# memproxy — two commands: `make run` (the whole embedded stack) and `make test` (install everything, run all tiers).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.memproxy-installed
VLLM := deploy/local/vllm-cpu.sh
PYTEST_ARGS ?=

.PHONY: install vllm run test test-unit test-memory test-integration test-deploy test-browser test-reliability test-e2e openwebui browser-deps fault-deps bench vllm-start vllm-stop clean

## install: the proxy and its test tools into .venv (idempotent; redone when pyproject.toml changes)
$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@# torch first, pinned: it takes the local CPU build; a plain `torch` requirement would pull CUDA packages.
	$(VENV)/bin/pip install -qq torch==2.13.0
	$(VENV)/bin/pip install -qq -c deploy/constraints.txt -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

## cypher-check: Neo4j's official Cypher parser (npm), for the static check of memory/graph/neo4j/cypher.py
CYPHER_CHECK := tests/cypher/node_modules/.package-lock.json
$(CYPHER_CHECK): tests/cypher/package-lock.json
	cd tests/cypher && npm ci --no-audit --no-fund --loglevel=error

## deploy-check: the Compose specification's JSON schema (npm), for tests/deploy
DEPLOY_CHECK := tests/deploy/node_modules/.package-lock.json
$(DEPLOY_CHECK): tests/deploy/package-lock.json
	cd tests/deploy && npm ci --no-audit --no-fund --loglevel=error

## browser-deps: Debian's Chromium for the memory browser's Playwright tests (never `playwright install`; idempotent)
SUDO := $(if $(filter 0,$(shell id -u)),,$(shell command -v sudo))
browser-deps:
	@command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium)

## fault-deps: Debian's libfaketime, for the reliability bench's clock jumping backwards (idempotent)
fault-deps:
	@ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends libfaketime)

## vllm: vLLM's CPU build in its own venv + SmolLM2 converted to a HF folder, in the cache dir (idempotent)
vllm:
	@$(VLLM) model >/dev/null

## run: vLLM + the proxy on 127.0.0.1:8080, in the foreground; Ctrl-C stops both
run: install
	@deploy/local/run.sh

## test: every tier: unit, memory, browser (headless Chromium), then the integration tier against the real vLLM CPU server
test: install vllm $(CYPHER_CHECK) $(DEPLOY_CHECK) browser-deps fault-deps
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-unit: install
	$(VENV)/bin/python -m pytest tests/unit $(PYTEST_ARGS)

test-memory: install $(CYPHER_CHECK)
	$(VENV)/bin/python -m pytest tests/memory tests/cypher $(PYTEST_ARGS)

test-deploy: install $(DEPLOY_CHECK)
	$(VENV)/bin/python -m pytest tests/deploy $(PYTEST_ARGS)

test-integration: install vllm
	$(VENV)/bin/python -m pytest tests/integration $(PYTEST_ARGS)

## test-reliability: kill -9 of a real proxy process just after answers, then a restart
test-reliability: install fault-deps
	$(VENV)/bin/python -m pytest tests/reliability $(PYTEST_ARGS)

test-browser: install browser-deps
	$(VENV)/bin/python -m pytest tests/browser $(PYTEST_ARGS)

## openwebui: Open WebUI in its own venv on the CPU torch, in the cache dir (idempotent; large the first time)
openwebui:
	@deploy/local/openwebui.sh install

## test-e2e: the acceptance tier (slow): Open WebUI + headless Chromium -> the proxy -> the real vLLM CPU server
test-e2e: install vllm browser-deps openwebui
	MEMPROXY_E2E_REQUIRED=1 HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest tests/e2e -m e2e $(PYTEST_ARGS)

## bench: proxy overhead against the fast local stub upstream
bench: install
	$(VENV)/bin/memproxy bench overhead

vllm-start:
	@$(VLLM) start

vllm-stop:
	@$(VLLM) stop

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache tests/cypher/node_modules tests/deploy/node_modules
