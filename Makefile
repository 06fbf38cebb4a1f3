# Two commands on a fresh machine: `make demo` and `make test` (each sets up .venv when missing).
VENV ?= .venv
PY := $(VENV)/bin/python
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv test test-spark35 test-install demo bench cluster-up cluster-down lint clean

venv:
	@VENV=$(VENV) bash scripts/bootstrap.sh

# CI's command: the suite, then the Spark 3.5 smoke subset
test: venv
	$(PY) -m pytest tests
	$(MAKE) --no-print-directory test-spark35

# Spark 3.5 LTS smoke subset in .venv-spark35 (pyspark 3.5 over .venv's packages)
VENV35 ?= .venv-spark35
PY35 := $(abspath $(VENV35))/bin/python
SPARK35_SMOKE := \
  "tests/integration/test_launch.py::test_allreduce_sums_across_two_ranks_in_rank_order" \
  "tests/integration/test_launch.py::test_failing_rank_raises_on_driver_with_its_message" \
  "tests/integration/test_keras_estimator.py::test_pipeline_learns_predicts_saves_and_loads[classic]" \
  "tests/unit/test_session.py::test_a_connect_session_on_pyspark_before_4_fails_naming_what_to_use"

test-spark35: venv
	VENV=$(VENV) VENV35=$(VENV35) bash scripts/spark35_venv.sh
	PYSPARK_PYTHON=$(PY35) PYSPARK_DRIVER_PYTHON=$(PY35) $(PY35) -m pytest $(SPARK35_SMOKE)

# sparkdl installed as the README's init script does, over another runtime's pyspark/TensorFlow
test-install:
	bash scripts/install_check.sh $(subst tests/,,$(SPARK35_SMOKE))

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
