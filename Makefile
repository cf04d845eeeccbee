# `make run` and `make test` each build .venv on first use; nothing else needs installing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 1416
SERVER ?= uvicorn

.PHONY: run run-cluster test test-fast check format bench bench-cluster clean

$(BIN)/dualserve: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,huggingface]'
	touch $@

run: $(BIN)/dualserve
	$(BIN)/dualserve run --pipelines-dir examples/pipeline_wrappers --host $(HOST) --port $(PORT) --server $(SERVER)

# The scale-out on this machine (needs redis-server): Redis, two `dualserve worker`s, the API; Ctrl-C stops all.
run-cluster: $(BIN)/dualserve
	BIN=$(BIN) HOST=$(HOST) PORT=$(PORT) scripts/run-cluster

# Every test (CI runs this), under coverage with branches, the servers the tests start included
# (pyproject.toml's [tool.coverage.run]); then the whole package's report and the framework-free core's.
test: $(BIN)/dualserve
	$(BIN)/python -m coverage erase
	$(BIN)/python -m coverage run -m pytest || status=$$?; \
	$(BIN)/python -m coverage combine --quiet && \
	$(BIN)/python -m coverage report && \
	$(BIN)/python -m coverage report --include='dualserve/core/*' && \
	echo "Coverage (statements and branches): dualserve $$($(BIN)/python -m coverage report --format=total)%," \
		"dualserve/core $$($(BIN)/python -m coverage report --include='dualserve/core/*' --format=total)%" || exit 1; \
	exit $${status:-0}

# The fast tier: the tests that start no process (no server, browser or CLI), without coverage.
test-fast: $(BIN)/dualserve
	$(BIN)/python -m pytest -m "not server"

check: $(BIN)/dualserve
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

# Needs wrk and curl (apt-get install wrk curl); takes about twelve minutes; see bench/README.md.
bench: $(BIN)/dualserve
	$(BIN)/python -m bench.run

# Needs redis-server (apt-get install redis-server); about five minutes; see bench/README.md.
bench-cluster: $(BIN)/dualserve
	$(BIN)/python -m bench.cluster

format: $(BIN)/dualserve
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache bench/.data .coverage .coverage.* htmlcov
