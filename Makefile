# Developer entry points. `make test` is what CI runs; VENV=... selects another environment.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: venv test bench demo asan

# (Re)install in editable mode when the build inputs change; this also compiles the C coder in place.
venv: $(VENV)/.installed

$(VENV)/.installed: setup.py setup.cfg pyproject.toml edgecodec/entropy/_rangecoder.c edgecodec/models/_fixedpoint.c
	test -x $(PY) || python3 -m venv $(VENV)
	@echo 'make: installing edgecodec and its dependencies into $(VENV) (a few minutes the first time; pip shows its progress)'
	$(PY) -m pip install --progress-bar on -e '.[dev]'
	touch $@

test: venv
	$(PY) -m pytest -q tests

bench: venv
	$(PY) -m tools.bench_coder

demo: venv
	$(VENV)/bin/edgecodec demo

asan: venv
	PY=$(PY) .ci/asan.sh

# The codec, bitstream and stream-mode tests and a bit-exactness check against x86 under an emulated
# aarch64 Debian (qemu-user-static + debootstrap; needs root; docs/arm.md). Not part of `make test`.
.PHONY: test-aarch64
test-aarch64: venv
	PY=$(PY) .ci/aarch64.sh
