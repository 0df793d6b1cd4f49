# The two commands a newcomer types: `make demo` and `make test`. Both set up the
# environment from nothing first (idempotent; see .ci/setup-env.sh).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
export FIFTYONE_DO_NOT_TRACK := true
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup demo test test-slow lint bench clean docs-figures

setup:
	@bash .ci/setup-env.sh

demo: setup
	$(VENV)/bin/curate demo

# Default test run (excludes tests marked slow). pytest exits non-zero on any failure
# and with code 5 when no test ran, which make treats as a failure too.
test: setup
	$(PYTEST) -q --timeout=900

test-slow: setup
	$(PYTEST) -q -m slow --timeout=1800

lint: setup
	$(VENV)/bin/ruff check curate tfds_builders train tests benchmarks

bench: setup
	$(PY) -m benchmarks

clean:
	rm -rf demo_output curate-workspace test-artifacts

# Refresh the figures the docs embed from the demo's own outputs.
docs-figures: demo
	cp demo_output/reports/affectnet/class_bars.png docs/img/remap_class_bars.png
	cp demo_output/reports/affectnet/transitions.png docs/img/remap_transitions.png
	cp demo_output/reports/affectnet/va_density.png docs/img/remap_va_density.png
	cp demo_output/reports/affectnet/report.md docs/remap-study-demo-report.md
	cp demo_output/workspace/runs/comparisons/demo.md docs/demo-comparison.md
