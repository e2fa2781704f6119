# Two README commands: `make run` (the main job) and `make test`; both install everything from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch first and pinned: 2.13.0 is a CPU build on disk here; an unpinned torch pulls a multi-GB CUDA build.
TORCH := torch==2.13.0
RUN_OUT ?= results/quick

.PHONY: install run test test-fast clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[test,text,xlsx]"
	touch $(STAMP)

run: install
	$(BIN)/recbole-fewshot quick --out $(RUN_OUT)

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache saved log log_tensorboard
