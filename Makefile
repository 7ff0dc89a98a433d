# Developer entry points. Everything runs inside the virtual environment .venv.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

# Use the Tango database the user names; never invent one (Debian's /etc/tangorc
# points elsewhere, so an explicit TANGO_HOST is the only reliable choice).
ifdef TANGO_HOST
export TANGO_HOST
endif

.PHONY: install test bench demo lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -e '.[dev]'
	touch $@

test: $(STAMP)
	$(VPY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	@set -e; for b in benchmarks/bench_*.py; do \
		[ -e "$$b" ] || { echo "no benchmarks found"; break; }; \
		echo "== $$b"; $(VPY) "$$b"; \
	done

demo: $(STAMP)
	$(VPY) -m experiments.demo

lint: $(STAMP)
	$(VPY) -m ruff check .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .coverage htmlcov
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
