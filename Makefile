# Two commands set everything up: `make test` and `make demo`. Each creates or
# reuses .venv and installs the project with the extras it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: test demo lint format bench docs docs-check figures clean

# The venv gets uv (from PyPI, through pip), which installs the project and
# its extras in a few seconds where pip takes half a minute. Where uv cannot
# install (an index that only pip is configured for, say), pip does.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv || true

# One stamp per extra; reinstalled when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[$*]" \
		|| $(BIN)/python -m pip install --quiet -e ".[$*]"
	touch $@

# Tests run in parallel, one worker per core (pytest-xdist), a test module's
# tests on one worker (its module-level fixtures are built once), and share
# compiled programs through JAX's persistent cache in .venv: a program one
# worker compiled, the other loads (and a second run loads them all).
JAX_CACHE := JAX_COMPILATION_CACHE_DIR=$(CURDIR)/$(VENV)/jax-cache \
	JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 \
	JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0

test: $(VENV)/.installed-test
	$(JAX_CACHE) $(BIN)/python -m pytest -n auto --dist loadscope

# A fresh output folder each time: a run never overwrites an earlier one.
DEMO_OUT ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)

demo: $(VENV)/.installed-demo
	$(BIN)/python -m train_demo --out $(DEMO_OUT)

lint: $(VENV)/.installed-lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-lint
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.installed-demo
	$(BIN)/python -m benchmarks.precision
	$(BIN)/python -m benchmarks.norms
	$(BIN)/python -m benchmarks.rope
	$(BIN)/python -m benchmarks.attention
	$(BIN)/python -m benchmarks.long_context
	$(BIN)/python -m benchmarks.demo_speed
	$(BIN)/python -m benchmarks.demo_compile
	$(BIN)/python -m benchmarks.generate

# The site, built strictly: any warning (a broken link, a bad docstring) fails.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Opens every page of the built site, in each content tab, in headless
# Chromium (/usr/bin/chromium, Debian's package) with every request off
# localhost blocked, screenshots them into build/docs-check/, and fails on raw
# TeX, on API signatures, tables or code wider than their column, inline code
# broken mid-word, a copy button over code, or a broken 404 page.
docs-check: docs
	$(BIN)/python docs/check_site.py

# Redraws docs/figures/*.png from the library's own functions.
figures: $(VENV)/.installed-docs
	$(BIN)/python docs/figures.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info site
