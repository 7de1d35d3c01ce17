# Mailgate developer entry points. Both targets bootstrap .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
# Test processes for make test: one per core; whole files stay on one process, so a module's
# live server or browser starts once. TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= auto
PYTEST := $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

.PHONY: run test lint typecheck contracts pytest system-packages bench fuzz clean screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mailgate serve --demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

# Real peers for the tests, from Debian's packages: Chromium (web UI) and Dovecot (IMAP).
# As root a failed install fails the run; otherwise the tests that need them skip and say why.
system-packages:
	@for script in scripts/install_chromium.sh scripts/install_dovecot.sh; do \
		if [ "$$(id -u)" -eq 0 ]; then bash $$script || exit 1; \
		else bash $$script || echo "warning: $$script needs root; the tests that need it skip"; fi; \
	done

pytest: $(STAMP) system-packages
	@if [ -z "$$MAILGATE_TEST_DATABASE_URL" ] && $(BIN)/python scripts/pg_available.py "$(PG_URL)"; then \
		echo "PostgreSQL answers on 127.0.0.1:5432: storage tests run on SQLite and PostgreSQL"; \
		MAILGATE_TEST_DATABASE_URL="$(PG_URL)" $(PYTEST); \
	else \
		$(PYTEST); \
	fi

test: lint typecheck contracts pytest

# Property-based fuzzing of the API: schemathesis over /openapi.json against an in-process
# server on 127.0.0.1, new random inputs each run, bounded (docs/security.md, "Fuzzing").
# `make test` runs the same check derandomised with 3 examples per operation.
FUZZ_EXAMPLES ?= 50
FUZZ_SECONDS ?= 1200
fuzz: $(STAMP)
	MAILGATE_FUZZ_RANDOM=1 MAILGATE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
		MAILGATE_FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/pytest tests/fuzz -q -rxX -p no:cacheprovider

# Every web UI page at 1280 px and 390 px, for review (docs/web-ui.md).
screenshots: $(STAMP)
	$(BIN)/python scripts/ui_screenshots.py var/screenshots

# Both databases when PostgreSQL answers (same URL as the tests), else SQLite alone.
bench: $(STAMP)
	@if $(BIN)/python scripts/pg_available.py "$(PG_URL)"; then \
		$(BIN)/python bench/delivery.py --pg-url "$(PG_URL)"; \
	else \
		$(BIN)/python bench/delivery.py; \
	fi

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache .hypothesis
