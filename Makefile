# Two commands on a fresh machine: `make demo` and `make test` (each sets up .venv when missing).
VENV ?= .venv
PY := $(VENV)/bin/python
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv test demo bench cluster-up cluster-down lint clean

venv:
	@VENV=$(VENV) bash scripts/bootstrap.sh

test: venv
	$(PY) -m pytest tests

demo: venv
	$(PY) examples/digits_cnn.py

bench: venv
	$(PY) bench/run_all.py $(BENCH_ARGS)

cluster-up: venv
	SPARKDL_PYTHON=$(abspath $(PY)) bash scripts/cluster.sh up

cluster-down:
	SPARKDL_PYTHON=$(abspath $(PY)) bash scripts/cluster.sh down

lint: venv
	$(VENV)/bin/ruff check sparkdl tests examples bench

clean:
	rm -rf build dist *.egg-info .pytest_cache
