# The two commands: `make demo` (run it) and `make test` (test it).
# Both work on a fresh clone: they create .venv and install the pinned set.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PACKAGES := -e libs/common -e libs/testkit -e services/gateway -e services/dialog \
            -e services/persistence -e services/emulator -e services/campaigns \
            -e services/media
PYTEST_ARGS ?=

.PHONY: install test lint typecheck pytest broker demo demo-campaign lock clean

install: $(VENV)/.installed

$(VENV)/.installed: constraints.txt requirements-dev.txt libs/*/pyproject.toml services/*/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(BIN)/python -m pip install --quiet \
	    --disable-pip-version-check $(PACKAGES) -r requirements-dev.txt
	touch $@

broker:
	scripts/ensure-tools.sh
	scripts/ensure-rabbitmq.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy libs/common/src libs/testkit/src services/gateway/src services/dialog/src \
	    services/persistence/src services/emulator/src services/campaigns/src \
	    services/media/src

pytest: install broker
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

demo: install broker
	$(BIN)/python scripts/demo.py

# A campaign of 20 numbers with mixed outcomes through the emulator.
demo-campaign: install broker
	$(BIN)/python scripts/demo_campaign.py

# Re-pin every third-party package to what is installed now.
lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v -e '^-e ' -e '^callbot-' > constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
