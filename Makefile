# hypertune: `make tune` runs the default search, `make test` the tests; both install first.
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# The local Flowers copy where it exists; empty = Flowers via mads_datasets (needs network).
DATA_DIR ?= $(firstword $(wildcard ../shared/data/flowers))
ARGS    ?=

.PHONY: install test lint format tune smoke analyze compare bench bench-gpu mlflow-ui lock clean

$(STAMP): requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)  ## create .venv with the locked dependencies

# A worker per core (pytest-xdist); one that runs out of tests takes another's.
test: install  ## run the test suite (CPU, 14-16 minutes on 2 cores: README, Development)
	$(PY) -m pytest -n auto --dist worksteal

lint: install  ## ruff + black + mypy, all must be clean
	$(VENV)/bin/ruff check .
	$(VENV)/bin/black --check .
	$(VENV)/bin/mypy

format: install  ## rewrite code in place: ruff's import order and fixes, black's layout
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/black .

tune: install  ## a 10-minute search + final model (ARGS="--preset long" or "--time-budget 30")
	$(PY) hypertune.py $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(ARGS)

smoke: install  ## a 1-minute search on generated images
	$(PY) hypertune.py --smoke-test $(ARGS)

compare: install  ## search methods at an equal budget (ARGS="--seeds 5 --budget 60")
	$(PY) hypertune.py compare $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(ARGS)

bench: install  ## benchmarks -> benchmarks/RESULTS.md (ARGS=--skip-e2e for the quick ones)
	$(PY) benchmarks/run.py $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(ARGS)

bench-gpu: install  ## epoch time, TFLOP/s, GPU busy per size and precision; 1/2/4 trials per GPU (own data)
	$(PY) benchmarks/gpu.py $(ARGS)

analyze: install  ## figures and report.html of the latest experiment (EXPERIMENT=name for another)
	$(PY) hypertune.py analyze $(if $(EXPERIMENT),logs/ray_results/$(EXPERIMENT)) $(ARGS)

mlflow-ui: install  ## MLflow's UI on the local store of --mlflow (http://127.0.0.1:5000)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(abspath logs/mlflow/mlflow.db) --port 5000

lock: install  ## rewrite requirements.lock from the current environment
	(echo "# Full lock of the environment (make install). Regenerate: make lock"; \
	 $(PY) -m pip freeze --exclude-editable) > requirements.lock

clean:  ## remove caches and build output (keeps .venv and logs/ray_results)
	rm -rf .mypy_cache .pytest_cache .ruff_cache build *.egg-info src/*.egg-info
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
