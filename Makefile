# The README's two commands: `make demo` runs the lab end to end, `make test` runs the tests.
# Both set everything up first: the virtual environment, every package (at the versions in
# constraints.txt), and Fashion-MNIST. `make test` also sets up the machine's parts the tests use:
# a Docker engine with docker-compose, and Chromium (scripts/setup_machine.sh; as root with apt it
# installs and starts them, elsewhere the tests that need them skip with one line each).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.convlab-installed
PYTEST_ARGS ?=

.PHONY: demo test install data machine lint bench study clean images

demo: install data
	$(PY) -m convlab demo
	@echo 'next, in each new shell: . $(VENV)/bin/activate   (puts convlab and python on PATH)'

test: install machine data
	$(PY) -m pytest $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[all]"
	touch $(STAMP)

data:
	sh scripts/get_fashion_mnist.sh $(PY)

machine:
	bash scripts/setup_machine.sh

images: machine
	bash scripts/docker_build.sh
	bash scripts/docker_build.sh --serve-only

lint: install
	$(VENV)/bin/hadolint Dockerfile

bench: install data
	$(PY) bench/train_throughput.py
	$(PY) bench/serve_bench.py
	$(PY) bench/transform_bench.py

# The lab's study at convergence (docs/lab/converged): every run trains until its validation accuracy
# stops improving (learning rate halved on a plateau, early stopping that keeps the best epoch out of
# the last 20 % of the run, at most 60 epochs). Two processes, one per core, at the lowest priority;
# records that exist are kept, so an interrupted study resumes where it stopped. Then its report, beside
# the 4-epoch budget of docs/lab, with the model figures drawn from the kept base CNN (model_figures/).
CONVERGED := --set epochs=60 --set lr_schedule=plateau --set early_stopping_patience=6 \
	--set early_stopping_fraction=0.2
study: install data
	nice -n 19 $(PY) scripts/run_study.py --all --runs docs/lab/converged $(CONVERGED) --workers 2 --no-progress
	nice -n 19 $(PY) scripts/make_report.py --runs docs/lab/converged --compare docs/lab --out docs/lab --name converged \
		--budget-names "converged,4 epochs"

clean:
	rm -rf work reports/demo .pytest_cache
