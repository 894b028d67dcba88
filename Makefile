# install / lint / test / bench / demo — one place for the commands a developer runs.
PY ?= python3

.PHONY: install lint test test-fast bench demo

install:
	$(PY) -m pip install -e ".[test]"

lint:
	ruff check engine tests bench

test:
	ruff check engine tests
	lint-imports
	$(PY) -m pytest -q

test-fast:
	$(PY) -m pytest -q tests/unit

bench:
	$(PY) bench/run_all.py

demo:
	$(PY) -m engine.demo
