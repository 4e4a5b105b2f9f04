# The README's two commands: `make demo` runs the lab end to end, `make test` runs the tests.
# Both set everything up first: the virtual environment, every package, and Fashion-MNIST.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.convlab-installed
PYTEST_ARGS ?=

.PHONY: demo test install data lint bench study clean

demo: install data
	$(PY) -m convlab demo

test: install data
	$(PY) -m pytest $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[all]"
	touch $(STAMP)

data:
	sh scripts/get_fashion_mnist.sh $(PY)

lint: install
	$(VENV)/bin/hadolint Dockerfile

bench: install data
	$(PY) bench/train_throughput.py
	$(PY) bench/serve_bench.py
	$(PY) bench/transform_bench.py

clean:
	rm -rf work reports/demo .pytest_cache
