#!/usr/bin/env bash
# Build the C extensions (range coder, fixed-point kernels) with AddressSanitizer and UBSan into a
# temporary directory and run the coder, bitstream, fuzz and kernel tests against that build.
# Any sanitizer report fails the run.
#   PY=.venv/bin/python .ci/asan.sh        (PY: a Python with numpy and pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PY:-.venv/bin/python}
case "$PY" in /*) ;; *) PY="$REPO/$PY" ;; esac
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
TESTS=(tests/test_entropy_coder.py tests/test_entropy_tables.py tests/test_entropy_fuzz.py
       tests/test_bitstream.py tests/test_fixedpoint.py tests/test_int8_kernel.py)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The package's Python sources without any build products, then the instrumented extension.
mkdir -p "$work/lib"
tar --exclude='*.so' --exclude=__pycache__ -cf - edgecodec | tar -xf - -C "$work/lib"
CC=${CC:-gcc} CFLAGS="-g $SAN" LDFLAGS="$SAN" \
    "$PY" setup.py -q build_ext --build-lib "$work/lib" --build-temp "$work/build" >"$work/build.log" 2>&1 \
    || { cat "$work/build.log"; exit 1; }

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
"
status=0
"$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]/#/$REPO/}" 2>&1 | tee "$work/tests.log" || status=$?
if compgen -G "$work/report*" >/dev/null || grep -qE "ERROR: AddressSanitizer|runtime error:" "$work/tests.log"; then
    cat "$work"/report* >&2 2>/dev/null || true
    echo "asan.sh: sanitizer report above" >&2
    exit 1
fi
[ "$status" -eq 0 ] || { echo "asan.sh: tests failed under the sanitizers (exit $status)" >&2; exit "$status"; }
echo "asan.sh: no sanitizer reports"
