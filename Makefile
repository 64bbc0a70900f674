# CineaMate: `make run` starts the platform, `make test` runs the whole suite.
# Both create .venv and install from the lock file when it is missing or out of date.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := constraints.txt
# Test processes: most integration tests wait on their servers, so two overlap well on two
# cores; a file's tests stay in one process (they share module fixtures). 0 runs in this one.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

.PHONY: run test test-fast lint format bench schemas docs lock clean help

help:
	@echo "make run      start the whole platform on http://127.0.0.1:8000"
	@echo "make test     run the whole test suite against real servers"
	@echo "make lint     ruff and mypy"
	@echo "make docs     regenerate docs/settings.md and docs/schemas/"
	@echo "make lock     re-resolve dependencies into $(LOCK)"

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(LOCK) -e '.[dev]'
	@touch $(STAMP)

# make run DEMO=0: without the demo experiment and its load (CINEAMATE_DEMO).
run: $(STAMP)
	$(if $(DEMO),CINEAMATE_DEMO=$(DEMO) )$(BIN)/cineamate run

test: $(STAMP)
	@scripts/ensure-system-packages
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs/*/cineamate services/*/cineamate

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: $(STAMP)
	$(BIN)/cineamate settings --markdown > docs/settings.md
	$(BIN)/cineamate settings --update-readme README.md
	$(BIN)/cineamate schemas --out docs/schemas

bench: $(STAMP)
	$(BIN)/python -m bench

# Re-resolve every dependency to its newest allowed release and pin the result.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade "pip>=24"
	.lock-venv/bin/python -m pip install --quiet '.[dev]'
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^cineamate' > $(LOCK)
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
