# The two commands: `make demo` (run it) and `make test` (test it).
# Both work on a fresh clone: they create .venv and install the pinned set.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PACKAGES := -e libs/common -e libs/testkit -e services/gateway -e services/dialog \
            -e services/persistence -e services/emulator -e services/campaigns \
            -e services/media
PYTEST_ARGS ?=

.PHONY: help install test lint typecheck pytest broker tools demo demo-campaign up down logs lock clean

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

install: $(VENV)/.installed ## create .venv with the pinned packages

$(VENV)/.installed: constraints.txt requirements-dev.txt libs/*/pyproject.toml services/*/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(BIN)/python -m pip install --quiet \
	    --disable-pip-version-check $(PACKAGES) -r requirements-dev.txt
	touch $@

# The demo needs Python and RabbitMQ only; the tools the tests use besides
# (docker-compose, to validate the compose file) are checked by `make test`.
broker:
	scripts/ensure-rabbitmq.sh

tools:
	scripts/ensure-tools.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy libs/common/src libs/testkit/src services/gateway/src services/dialog/src \
	    services/persistence/src services/emulator/src services/campaigns/src \
	    services/media/src

pytest: install broker tools
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest ## ruff, mypy --strict and the whole pytest suite (what CI runs)

demo: install broker ## one emulated call through the whole stack, printed, then everything stops
	$(BIN)/python scripts/demo.py

up: install broker ## the whole stack as local background processes, kept running (API key and URLs printed)
	$(BIN)/python scripts/stack.py up

down: ## stop everything `make up` started
	@if test -x $(BIN)/python; then $(BIN)/python scripts/stack.py down; fi

logs: ## follow the logs of `make up` (.run/logs)
	tail -n 20 -F .run/logs/*.log

# A campaign of 20 numbers with mixed outcomes through the emulator.
demo-campaign: install broker ## a campaign of 20 numbers with mixed outcomes through the emulator
	$(BIN)/python scripts/demo_campaign.py

# Re-pin every third-party package to what is installed now.
lock: install ## re-pin constraints.txt to what is installed
	$(BIN)/python -m pip freeze --exclude-editable | grep -v -e '^-e ' -e '^callbot-' > constraints.txt

clean: ## remove .venv and the caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
