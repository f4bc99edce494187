# medloop: `make demo` runs a real campaign on the embedded defaults; `make test` runs
# every quality gate. Both create .venv and install on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medloop-installed
DEMO_DATA ?= .medloop/data/Dataset901_Phantom

# Offline and quiet third-party libraries; the code under test comes from this tree.
export LITELLM_LOCAL_MODEL_COST_MAP := True
export LITELLM_OFFLINE_MODE := true
export ANONYMIZED_TELEMETRY := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONPATH := $(CURDIR)

.PHONY: install demo test check lint typecheck imports pytest bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned, so nothing resolves a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/medloop dataset synth $(DEMO_DATA) --cases 48 --seed 7
	$(BIN)/medloop campaign run examples/quickstart.yaml

test: install check

check: lint typecheck imports pytest

lint:
	$(BIN)/ruff check medloop tests bench
	$(BIN)/ruff format --check medloop tests bench

typecheck:
	$(BIN)/mypy medloop

imports:
	$(BIN)/lint-imports

# Tests that drive a Ray head from the test process run in a process of their own: a
# Ray driver leaves native threads and its own signal handlers behind after shutdown.
pytest:
	$(BIN)/python -m pytest -q -m "not ray"
	$(BIN)/python -m pytest -q -m ray

bench: install
	$(BIN)/python bench/loop_overhead.py

clean:
	rm -rf .medloop .mypy_cache .ruff_cache .pytest_cache
