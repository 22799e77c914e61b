# Set-up and entry points. Both `make demo` and `make test` create .venv when it is missing.
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.toolgym-installed

.PHONY: install demo demo-quick test bench lint typecheck clean sandbox-deps vllm-venv test-vllm

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first, pinned, so no later requirement pulls a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/toolgym demo $(DEMO_ARGS)

demo-quick: install
	$(VENV)/bin/toolgym demo --quick

# Lint and types first (seconds), then the suite; the shell tests need bwrap and dockerd (sandbox-deps).
test: install sandbox-deps lint typecheck
	$(PY) -m pytest -q --durations=30

bench: install
	$(PY) benchmarks/env_step.py

# bubblewrap, docker.io and debootstrap; dockerd started; the shell base image built offline (root, Debian)
sandbox-deps:
	bash scripts/sandbox_deps.sh

# vLLM's CPU build in its own venv (.venv-vllm; it pins its own torch and transformers)
vllm-venv:
	bash scripts/vllm_venv.sh

# The real-engine tier: one vLLM server per model per module (~1-3 min to start each on 2 cores),
# then the RL system with vLLM inference workers (a server per worker)
test-vllm: install vllm-venv
	$(PY) -m pytest -q -m vllm tests/policies/test_vllm.py tests/trainers/system/test_system_vllm.py

lint: install
	$(PY) -m ruff check toolgym tests examples benchmarks scripts

typecheck: install
	$(PY) -m mypy

clean:
	rm -rf $(VENV) build *.egg-info
