# `make run` and `make test` each bootstrap .venv on a fresh machine.
# torch==2.13.0 is installed first: a bare `torch` requirement would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1

.PHONY: run test venv clean gpu-wheels

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,ray,causal-lm]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tpme run $(ARGS)

test: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

# wheels the GPU machine's image lacks, carried by benchmarks/gpu_session.sh (see its header)
gpu-wheels: $(STAMP)
	$(BIN)/pip download --quiet --no-deps --only-binary=:all: -d .whl loralib==0.1.2

clean:
	rm -rf $(VENV) runs .pytest_cache
