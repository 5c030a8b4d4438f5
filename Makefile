# Two commands on a fresh clone: `make demo` (the main job on the embedded default) and `make test`.
# Each creates .venv when it is missing. torch is pinned to 2.13.0: the CPU build that installs
# without a multi-GB download on the project's machines.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Every Python file of the repository is linted, scripts included (examples/, tools/, evidence/).
PY_PATHS := hyft tests bench examples tools evidence
STAMP := $(VENV)/.hyft-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[demo,dev,scale,trackers,ray]"
	# DeepSpeed (the ZeRO tests) is an sdist whose build imports torch: built against the pinned torch.
	$(PY) -m pip install -q setuptools wheel
	$(PY) -m pip install -q --no-build-isolation "deepspeed==0.19.8"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hyft run configs/demo.yaml

test: $(STAMP)
	$(VENV)/bin/ruff check $(PY_PATHS) && $(VENV)/bin/ruff format --check $(PY_PATHS) && $(VENV)/bin/lint-imports && $(PY) -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check $(PY_PATHS) && $(VENV)/bin/ruff format --check $(PY_PATHS)

bench: $(STAMP)
	$(PY) bench/adapters.py

clean:
	rm -rf $(VENV) runs .pytest_cache
