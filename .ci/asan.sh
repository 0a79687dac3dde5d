#!/usr/bin/env bash
# Build the C extensions (range coder, fixed-point kernels) with AddressSanitizer and UBSan into a
# temporary directory and run the coder, bitstream, fuzz and kernel tests against that build, twice:
# as built for this CPU and as built without the AVX2 code (-DEDGECODEC_NO_AVX2), the path other
# CPUs take. Any sanitizer report fails the run.
#   PY=.venv/bin/python .ci/asan.sh        (PY: a Python with numpy and pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PY:-.venv/bin/python}
case "$PY" in /*) ;; *) PY="$REPO/$PY" ;; esac
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
TESTS=(tests/test_entropy_coder.py tests/test_entropy_tables.py tests/test_entropy_fuzz.py
       tests/test_bitstream.py tests/test_fixedpoint.py tests/test_int8_kernel.py tests/test_analysis_kernel.py
       tests/test_synthesis_kernel.py)

run_variant() {  # NAME EXTRA_CFLAGS: build the extensions so, then run the tests against that build
    local name=$1 extra=$2 work status=0
    work=$(mktemp -d)
    # The package's Python sources without any build products, then the instrumented extension.
    mkdir -p "$work/lib"
    tar --exclude='*.so' --exclude=__pycache__ -cf - edgecodec | tar -xf - -C "$work/lib"
    CC=${CC:-gcc} CFLAGS="-g $SAN $extra" LDFLAGS="$SAN" \
        "$PY" setup.py -q build_ext --build-lib "$work/lib" --build-temp "$work/build" >"$work/build.log" 2>&1 \
        || { cat "$work/build.log"; rm -rf "$work"; return 1; }
    (
        export PYTHONPATH="$work/lib"
        export LD_PRELOAD
        LD_PRELOAD=$(${CC:-gcc} -print-file-name=libasan.so)
        # Reports go to files: pytest captures fd 2, and an abort would lose them there.
        export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$work/report"
        export PYTHONMALLOC=malloc  # every object on the heap ASan watches (pymalloc arenas are invisible)
        export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$work/report"
        cd "$work"  # so that the repository's own edgecodec/ is not importable from the cwd
        "$PY" -c "
import sys, edgecodec.entropy._rangecoder as rc
sys.exit(0 if rc.__file__.startswith('$work/lib/') else 'asan.sh: imported %s, not the sanitized build' % rc.__file__)
" || exit 1  # (errexit does not apply inside a subshell on the left of ||)
        "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]/#/$REPO/}" 2>&1 | tee "$work/tests.log"
    ) || status=$?
    if compgen -G "$work/report*" >/dev/null || grep -qE "ERROR: AddressSanitizer|runtime error:" "$work/tests.log"; then
        cat "$work"/report* >&2 2>/dev/null || true
        echo "asan.sh: sanitizer report above ($name build)" >&2
        status=1
    fi
    rm -rf "$work"
    [ "$status" -eq 0 ] || { echo "asan.sh: tests failed under the sanitizers ($name build, exit $status)" >&2; return 1; }
    echo "asan.sh: no sanitizer reports ($name build)"
}

# The build a CPU with AVX2 runs, then the portable one (ARM boards): scalar finish, no int8 kernel.
run_variant avx2 ""
run_variant portable "-DEDGECODEC_NO_AVX2"
