# medloop: `make demo` runs a real campaign on the embedded defaults; `make test` runs
# every quality gate. Both create .venv and install on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medloop-installed
# Every version `make install` installs (extras all + dev), made by pip-compile from
# pyproject.toml + constraints.txt: `make lock` keeps the pins that still fit,
# `make lock UPGRADE=1` moves them all to the newest that fit.
LOCK := requirements.lock
DEMO_DATA ?= .medloop/data/Dataset901_Phantom

# Offline and quiet third-party libraries; the code under test comes from this tree.
export LITELLM_LOCAL_MODEL_COST_MAP := True
export LITELLM_OFFLINE_MODE := true
export ANONYMIZED_TELEMETRY := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONPATH := $(CURDIR)

.PHONY: install lock demo test check lint typecheck imports pytest bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# The lock pins torch==2.13.0+cpu: the CPU wheel pip finds on disk (find-links), so nothing
# resolves a multi-GB CUDA build. medloop itself goes in last, editable, without deps.
$(STAMP): $(LOCK) pyproject.toml constraints.txt | $(VENV)/bin/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

lock: | $(VENV)/bin/python
	$(BIN)/pip install -q 'pip-tools>=7.4'
	CUSTOM_COMPILE_COMMAND="make lock  (UPGRADE=1 moves every pin)" $(BIN)/pip-compile -q \
	  --extra all --extra dev --constraint constraints.txt --strip-extras --allow-unsafe \
	  --no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade) \
	  --output-file $(LOCK) pyproject.toml
	# The `all` extra's self-reference comes out as `medloop @ file:///<this folder>`: a path
	# no other machine has. medloop goes in after the lock, editable (install above).
	sed -i '/^medloop @ /,+1d' $(LOCK)
	sed -i '1i # `make install` runs pip install -r $(LOCK), then pip install --no-deps -e .\n# torch==2.13.0+cpu is the CPU wheel on disk that pip finds through its find-links\n# (/opt/wheels in pip.conf); on another machine, point --find-links at that wheel.' $(LOCK)

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

# Two kinds of test run in pytest processes of their own: those that drive a Ray head
# from the test process (a Ray driver leaves native threads and its own signal handlers
# behind after shutdown), and those that run librosa's numba JIT in it (it crashed CI's
# shared process twice; tests/conftest.py fails an unmarked test that imports numba).
pytest:
	$(BIN)/python -m pytest -q -m "not ray and not numba"
	$(BIN)/python -m pytest -q -m numba
	$(BIN)/python -m pytest -q -m ray

bench: install
	$(BIN)/python bench/loop_overhead.py

clean:
	rm -rf .medloop .mypy_cache .ruff_cache .pytest_cache
