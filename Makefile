# beamscore: the same targets locally and in CI. Each creates .venv when it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test docs lint format bench bench-quick bench-scaling bench-baselines bench-read bench-codecs bench-row-groups clean

# One TensorFlow: the CPU one ([cpu]); a GPU machine installs [gpu] instead, never both.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# a path-based editable install (a .pth of this folder), which mypy and pyright follow from a
	# user's own folder; setuptools' default mode installs an import hook that they cannot
	$(PY) -m pip install --quiet -e '.[cpu,dev]' --config-settings editable_mode=compat
	# tf-keras (Keras 2 test models) requires `tensorflow`, which would overwrite tensorflow-cpu: no deps
	$(PY) -m pip install --quiet --no-deps 'tf-keras>=2.21,<2.22'
	# tensorflow-text (the op scan's custom-op family) requires `tensorflow` too: no deps
	$(PY) -m pip install --quiet --no-deps 'tensorflow-text>=2.21,<2.22'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

# One pytest worker per core (CI has 2); a test file stays on one worker (its module fixtures:
# servers, clusters, models are set up once). PYTEST_ARGS="-n 0" runs it in one process.
PYTEST_ARGS ?= -n auto --dist loadfile
test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The docs site (docs/, mkdocs.yml) into site/; --strict: a broken link or anchor fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# pyright from npm (Node is needed), pinned, installed inside .venv (never globally)
PYRIGHT_VERSION := 1.1.414
PYRIGHT := $(VENV)/node/node_modules/.bin/pyright

$(PYRIGHT): $(STAMP)
	npm install --silent --no-audit --no-fund --prefix $(VENV)/node pyright@$(PYRIGHT_VERSION)
	touch $(PYRIGHT)

lint: $(STAMP) $(PYRIGHT)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m mypy
	$(PYRIGHT) --pythonpath $(PY)
	$(PY) scripts/typecheck_examples.py --pyright $(PYRIGHT)

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Benchmarks (not part of `make test`): `make bench`, `make bench-quick`, or `make bench ARGS=--quick`.
BASELINES := .venv-baselines/.installed

$(BASELINES): benchmarks/baselines.txt $(STAMP)
	$(PY) -m pip install --quiet --no-deps --upgrade --target .venv-baselines -r benchmarks/baselines.txt
	touch $(BASELINES)

bench-baselines: $(BASELINES)

bench: $(STAMP) $(BASELINES)
	$(PY) -m benchmarks.bench $(ARGS)
	$(PY) -m benchmarks.several_models $(filter --quick,$(ARGS))

bench-quick: $(STAMP) $(BASELINES)
	$(PY) -m benchmarks.bench --quick $(ARGS)

# rows/s of one job on 1 and 2 worker processes and 1 and 2 Dask workers (MobileNetV2, MLP); e.g. ARGS="--rows 2048 --workers 1 2 4"
bench-scaling: $(STAMP)
	$(PY) -m benchmarks.scaling $(ARGS)

# read + decode rows/s of each input format on one core; e.g. ARGS="--rows 500000 --formats tfrecord,parquet"
bench-read: $(STAMP)
	$(PY) -m benchmarks.read_formats $(ARGS)

# files/s of planning 1,000 and 20,000 Parquet files at 40 ms per request; e.g. ARGS="--files 5000 --delay 0.08"
.PHONY: bench-plan
bench-plan: $(STAMP)
	$(PY) -m benchmarks.plan $(ARGS)
# rows/s of scoring a Parquet file of tiny row groups (one row each by default); e.g. ARGS="--row-group-rows 16"
bench-row-groups: $(STAMP)
	$(PY) -m benchmarks.small_row_groups $(ARGS)

# two models over one read against two jobs, and ten routed models' memory (docs/performance.md, "Several models");
# e.g. ARGS="--rows 200000" or ARGS="--rows 20000 --hidden 2048" (17 MiB of weights a model)
.PHONY: bench-models
bench-models: $(STAMP)
	$(PY) -m benchmarks.several_models $(ARGS)

# Parquet output codecs: writer rows/s and bytes per row (docs/performance.md, "Output compression").
bench-codecs: $(STAMP)
	$(PY) -m benchmarks.write_codecs $(ARGS)

clean:
	rm -rf $(VENV) .venv-baselines build demo site .pytest_cache
