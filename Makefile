# install / lint / test / bench / demo: the commands a developer runs.
PY ?= python3

.PHONY: deps install lint test test-fast bench demo

deps:
	@PY=$(PY) bash scripts/install-deps.sh

install:
	$(PY) -m pip install -e ".[test]"

lint:
	ruff check engine tests bench
	lint-imports

test: deps
	ruff check engine tests
	lint-imports
	$(PY) -m pytest -q

test-fast:
	$(PY) -m pytest -q tests/unit

bench: deps
	$(PY) bench/run_all.py

demo: deps
	nurture demo
