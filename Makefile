# Two commands on a fresh machine: `make demo` and `make test` (each sets up .venv when missing).
VENV ?= .venv
PY := $(VENV)/bin/python
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv test test-runtime docs demo bench cluster-up cluster-down lint clean

venv:
	@VENV=$(VENV) bash scripts/bootstrap.sh

$(PY):
	@VENV=$(VENV) bash scripts/bootstrap.sh

# CI's command: the suite on the default stack, the docs site, then the smoke subset on the
# oldest runtime profile
test: venv
	$(PY) -m pytest tests
	$(MAKE) --no-print-directory docs
	$(MAKE) --no-print-directory test-runtime PROFILE=oldest

# One runtime's own packages (scripts/runtimes/$(PROFILE).env) in a fresh venv, sparkdl installed
# as the README's init script does, those packages checked unchanged, then the smoke subset:
# fit, transform, save and load in a Pipeline, per-epoch validation metrics, Horovod's ranks (a
# profile's SMOKE_TESTS replace it: the torch profile runs every backend-neutral test).
PROFILE ?= oldest
SMOKE := \
  "integration/test_launch.py::test_allreduce_sums_across_two_ranks_in_rank_order" \
  "integration/test_launch.py::test_failing_rank_raises_on_driver_with_its_message" \
  "integration/test_keras_estimator.py::test_pipeline_learns_predicts_saves_and_loads[classic]" \
  "integration/test_keras_estimator.py::test_validation_metrics_equal_evaluate_at_every_epoch" \
  "integration/test_reader.py" \
  "unit/test_session.py::test_a_connect_session_on_pyspark_before_4_fails_naming_what_to_use"

test-runtime:
	bash scripts/runtime_check.sh $(PROFILE) $(SMOKE)

# The docs site (mkdocs.yml, docs/, API pages from the docstrings) into site/. --strict: a broken
# link, a missing page or an API reference that does not resolve fails the build. The `docs`
# extra of setup.cfg is installed into $(VENV) when missing (sparkdl itself is read, not imported).
DOCS_EXTRA = $$($(PY) -c "import configparser as c; p = c.ConfigParser(); p.read('setup.cfg'); \
  print(p['options.extras_require']['docs'])")
docs: | $(PY)
	@$(PY) -c "import mkdocs, material, mkdocstrings_handlers.python" 2>/dev/null || \
	  $(PY) -m pip install -q -c constraints.txt $(DOCS_EXTRA)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

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
	rm -rf build dist site *.egg-info .pytest_cache
