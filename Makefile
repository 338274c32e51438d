# make demo: set up .venv if needed, then run the whole pipeline on synthetic CREMA-D.
# make test: set up .venv if needed, check the import layering (lint-imports), then run the unit tests and execute the notebooks.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.emolib-installed
WORK ?= work

.PHONY: demo test setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements-local.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-local.txt
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m emolib demo --work $(WORK)

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q tests notebooks kaggle --nbmake -n 2 --dist loadgroup -m "not browser" --durations=15
	$(PY) -m pytest -q tests -m browser

clean:
	rm -rf $(WORK) reports .pytest_cache
