# Two README commands: `make run` (the main job) and `make test`; both install everything from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch first and pinned: 2.13.0 is a CPU build on disk here; an unpinned torch pulls a multi-GB CUDA build.
TORCH := torch==2.13.0
EXTRAS := .[test,text,xlsx,parquet]
# The versions the test suite last passed with; `make lock` refreshes them (docs/install.md).
CONSTRAINTS := constraints.txt
RUN_OUT ?= results/quick

.PHONY: install lock run test test-fast clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) $(TORCH)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e "$(EXTRAS)"
	touch $(STAMP)

# Resolve the newest versions setup.cfg allows in a scratch environment and record them in constraints.txt.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet $(TORCH)
	.lock-venv/bin/python -m pip install --quiet -e "$(EXTRAS)"
	{ echo "# pip constraints: the versions the test suite passed with (make lock rewrites this file)."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | sed -e 's/+cpu$$//'; } > $(CONSTRAINTS)
	rm -rf .lock-venv

run: install
	$(BIN)/recbole-fewshot quick --out $(RUN_OUT)

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) .lock-venv *.egg-info .pytest_cache saved log log_tensorboard
