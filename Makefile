# One command runs the main job (`make demo`), one runs the tests (`make test`).
# Each creates or reuses the virtualenv in .venv and is idempotent.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= runs/demo

# glibc hands SampleCNN's large activations back to the OS after every step and faults them in
# again; keeping them mapped makes CPU steps 1.5-1.8x faster (docs/performance.md).
export MALLOC_MMAP_MAX_ := 0
export MALLOC_TRIM_THRESHOLD_ := 68719476736

.PHONY: install demo test test-fast cluster-check lint bench gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mfclr run --preset demo --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest -q

# The quick loop while editing: no Ray cluster, no launcher, no end-to-end runs (a few minutes).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not ray and not cluster and not slow"

# `ray up` of cluster-onprem.yaml on this machine, a sweep submitted as a job, `ray down`
# (docs/cluster.md, section "The launcher test"); `make test` runs it too. Needs root,
# openssh-server, openssh-client and rsync, else it is skipped and says which are missing.
cluster-check: $(STAMP)
	$(PY) -m pytest -q -rs -m cluster

lint: $(STAMP)
	$(VENV)/bin/ruff check mfclr tests benchmarks experiments tools
	$(VENV)/bin/ruff format --check mfclr tests benchmarks experiments tools

bench: $(STAMP)
	$(PY) -m benchmarks.throughput

# The GPU checks (docs/performance.md, section GPU check): at most 8 minutes on one GPU, one JSON
# line; without CUDA every check reports skipped. GPU_CHECK_ARGS=--allow-cpu runs them on CPU.
gpu-check: $(STAMP)
	$(PY) -m tools.gpu_check $(GPU_CHECK_ARGS)

clean:
	rm -rf runs data_cache .pytest_cache
