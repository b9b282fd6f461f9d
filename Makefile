# Two commands set everything up on a fresh machine (see README.md):
#   make demo   - create the virtualenv, install requirements, start a local 3-node cluster
#   make test   - create the virtualenv, install requirements, run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test
NODES ?= 3

.PHONY: setup demo test test-sqlite test-postgres lint soak

setup: $(STAMP)

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

demo: setup
	$(BIN)/python manage.py runpaxos --demo --nodes $(NODES)

# Two pytest-xdist workers (WORKERS=0 for one process): the tests that start node processes run
# one after another on one of them (tests/conftest.py), the in-process tests on the other.
WORKERS ?= 2
PARALLEL := $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadgroup)

# The whole suite on SQLite (the default), then on PostgreSQL (a server on 127.0.0.1:5432 with
# trust auth): the storage/runtime tests of tests/node, and every test marked `postgres` (real
# clusters with one PostgreSQL database per node).
test: setup
	$(BIN)/python -m pytest $(PARALLEL)
	DATABASE_URL=$(POSTGRES_URL) $(BIN)/python -m pytest $(PARALLEL) tests/node
	DATABASE_URL=$(POSTGRES_URL) $(BIN)/python -m pytest -m postgres --ignore=tests/node

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Long runs, not part of `make test`: many simulator seeds.
soak: setup
	$(BIN)/python -m consensus.sim --seeds 5000 --nodes 3 --groups 2
	$(BIN)/python -m consensus.sim --seeds 2000 --nodes 5 --groups 2
	$(BIN)/python -m consensus.sim --seeds 1000 --nodes 3 --groups 2 --graceful-stop-rate 0.03
	$(BIN)/python -m consensus.sim --seeds 1000 --nodes 5 --groups 2 --left-down 2
	$(BIN)/python -m consensus.sim --seeds 2000 --nodes 3 --groups 2 --wipe-rate 0.3
	$(BIN)/python -m consensus.sim --seeds 1000 --nodes 5 --groups 2 --wipe-rate 0.5
	$(BIN)/python -m consensus.sim --seeds 1000 --nodes 3 --groups 2 --scenario hand-over-reads
	$(BIN)/python -m consensus.sim --seeds 1000 --nodes 5 --groups 2 --scenario hand-over-reads
	$(BIN)/python -m consensus.sim --seeds 1000 --nodes 3 --groups 2 --scenario stale-acks
	$(BIN)/python -m consensus.sim --seeds 1000 --nodes 5 --groups 2 --scenario stale-acks
