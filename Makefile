# Two entry points a new user needs: `make demo` and `make test`. Both create ./.venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo review-demo test test-all venv clean

venv: $(STAMP)

# torch is left to the resolver on purpose: pinning a version can pick up a CPU-only local wheel
# that PyPI's torchvision cannot import against.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,review]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pancreasseg demo demo

# The browser reading room on the demo phantom (after `make demo`): open the address it prints.
review-demo: $(STAMP)
	test -f demo/phantom.nii.gz || $(VENV)/bin/pancreasseg demo demo
	$(VENV)/bin/pancreasseg review demo --dataset demo/Dataset501_Curated --reviewer $${USER:-reviewer}

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

test-all: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo .pytest_cache
