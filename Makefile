# One-command set-up: every target below creates the virtual environment and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
IDEA ?= a command-line todo list kept in todo.json: python main.py add TEXT adds an item, list prints the items numbered from 1 with [x] before done ones and [ ] before open ones, done N marks item N done, remove N deletes it
EXTRAS ?= local,postgres,draw,evals,server,dev

# ../shared/wheels, when present, is a wheel cache only: every dependency installs prebuilt from PyPI without it.
SHARED_WHEELS := $(wildcard $(CURDIR)/../shared/wheels)
ifneq ($(SHARED_WHEELS),)
export PIP_FIND_LINKS := $(abspath $(SHARED_WHEELS)) $(PIP_FIND_LINKS)
endif

.PHONY: install demo test test-fast lint model bench clean langgraph-json

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

model: install
	$(BIN)/sopgraph model install

demo: model
	$(BIN)/sopgraph company "$(IDEA)"

test: model
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not local_model"

# mypy checks the package as one program (`-p sopgraph`: the top-level folders through sopgraph/'s symlinks),
# so names imported across modules carry their real types.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy -p sopgraph

# langgraph.json's graphs (from graphs/registry.py, the one list) and serializer allow-list
# (sopgraph.state.checkpoint_types(): what a checkpoint may hold, the rule stated in state/__init__.py).
langgraph-json: install
	$(BIN)/python -c "from sopgraph.graphs.registry import write_langgraph_json; write_langgraph_json()"

bench: install
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
