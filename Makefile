# The journal's commands. `make journal` reruns every experiment; `make test` checks everything.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# notebooks side by side in `make journal`, each after those it needs; `make journal LANES=1`: one at a time
LANES  ?= 2
# pytest workers in `make test`: 2 pytest-xdist workers (each smoke run executed once, at one thread, by the first
# worker to need it); `make test TEST_WORKERS=0`: one process. On 2 idle cores, pytest took 8 min 22 s in two workers
# and about 11 min in one process
TEST_WORKERS ?= 2

.PHONY: setup read journal test lab bench crosscheck clean

setup: $(STAMP)  ## create .venv and install torch (CPU), the pinned requirements and glassbox

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

read: setup  ## render the committed notebooks, outputs included, into build/journal (nothing is rerun)
	$(PY) -m glassbox.journal render --out build/journal
	@echo "open build/journal/index.html in a browser"

journal: setup  ## execute every notebook in full mode (in place, in $(LANES) lanes), render build/journal, update README
	$(PY) -m glassbox.journal run --lanes $(LANES)
	$(PY) -m glassbox.journal render --out build/journal
	$(PY) -m glassbox.journal readme

test: setup  ## unit tests + every notebook in smoke mode (into a temp folder), in $(TEST_WORKERS) pytest workers
	$(PY) -m pytest -n $(TEST_WORKERS)

lab: setup  ## JupyterLab on a working copy of the notebooks (build/lab/): autosave never writes over a committed one
	$(PY) -m glassbox.journal.lab

bench: setup  ## train times and throughputs: printed table + build/bench.json
	$(PY) tests/bench.py

CC_VENV  := build/crosscheck-venv
CC_PY    := $(CC_VENV)/bin/python
CC_STAMP := $(CC_VENV)/.installed

$(CC_STAMP): tests/crosscheck/requirements.txt
	test -x $(CC_PY) || $(PYTHON) -m venv $(CC_VENV)
	$(CC_PY) -m pip install -q torch==2.13.0
	$(CC_PY) -m pip install -q -r tests/crosscheck/requirements.txt
	touch $(CC_STAMP)

crosscheck: setup $(CC_STAMP)  ## notebook 10's attribution graph vs circuit-tracer 0.5.0 (own venv build/crosscheck-venv) -> tests/crosscheck/circuit_tracer.json
	OMP_NUM_THREADS=1 $(PY) tests/crosscheck/export_ours.py build/crosscheck/ours.pt
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(CC_PY) tests/crosscheck/crosscheck.py

clean:
	rm -rf build .pytest_cache
