#!/usr/bin/env bash
# edgecodec on aarch64, emulated (issue 18): on a Debian x86-64 machine, as root, from scratch.
#  1. installs qemu-user-static, binfmt-support and debootstrap, and registers qemu for arm64 binaries;
#  2. builds a Debian bookworm arm64 userland (python3 3.11, python3-venv, python3-dev, gcc) in
#     .aarch64/rootfs (git-ignored, kept for the next run; AARCH64_FRESH=1 rebuilds it);
#  3. copies the source tree in and pip-installs it into a venv at /opt/edgecodec/venv there, as
#     docs/arm.md installs it on a board: the C extensions compiled by arm64 gcc, numpy, opencv and
#     ai-edge-litert from PyPI's aarch64 wheels;
#  4. runs the codec, bitstream, coder, fixed-point and stream-mode tests under aarch64;
#  5. checks bit-exactness both ways on the same source pixels (generated on x86, read by both as .npy;
#     tests/test_aarch64_golden.py sources/write/check): stills and stream-mode packets encoded on either
#     machine must be the bytes the other writes and decode there to the same integer latents and the
#     same pixels (the int8 analysis and the float synthesis run in edgecodec's own CPU-independent
#     kernels, docs/models.md); the CLI likewise.
#   .ci/aarch64.sh            the whole run (about 16 minutes from scratch on 2 cores, see docs/arm.md)
#   .ci/aarch64.sh --golden   also re-record tests/data/aarch64/ from the aarch64 encoder
# Environment: PY (x86 Python with edgecodec installed, default .venv/bin/python), DEBIAN_MIRROR,
# AARCH64_CACHE (default .aarch64), AARCH64_FRESH=1.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PY:-.venv/bin/python}
case "$PY" in /*) ;; *) PY="$REPO/$PY" ;; esac
CACHE=${AARCH64_CACHE:-$REPO/.aarch64}
ROOT=$CACHE/rootfs
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PKGS=python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates
VENV=/opt/edgecodec/venv  # inside the arm64 root, where docs/arm.md and systemd/*.service put it
TESTS=(tests/test_codec.py tests/test_bitstream.py tests/test_entropy_coder.py tests/test_fixedpoint.py
       tests/test_temporal.py tests/test_int8_kernel.py tests/test_analysis_kernel.py tests/test_exact_analysis.py
       tests/test_synthesis_kernel.py tests/test_fixed_order_synthesis.py tests/test_aarch64_golden.py)
GOLDEN=0
[ "${1:-}" = --golden ] && GOLDEN=1
export DEBIAN_FRONTEND=noninteractive
T0=$(date +%s)
log() { printf '[aarch64.sh %5ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { log "FAILED: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, binfmt_misc)"
[ "$(uname -m)" = x86_64 ] || log "warning: meant for an x86-64 host, this is $(uname -m)"

# --- 1. host tools and qemu's binfmt registration ----------------------------------------------------
missing=()
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v update-binfmts >/dev/null || missing+=(binfmt-support)
if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
BINFMT=/proc/sys/fs/binfmt_misc
[ -e $BINFMT/register ] || mount -t binfmt_misc binfmt_misc $BINFMT 2>/dev/null || true
[ -e $BINFMT/register ] || die "binfmt_misc is not available here (a container without the privilege to mount
it?): arm64 programs that start other programs (debootstrap, pip, gcc) cannot run under qemu without it.
Run on a VM or a --privileged container."
[ -e $BINFMT/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 2>/dev/null \
    || sed -n '/^:/p' /usr/lib/binfmt.d/qemu-aarch64.conf > $BINFMT/register
grep -qx enabled $BINFMT/qemu-aarch64 || die "qemu-aarch64 is registered but disabled in $BINFMT"
INTERP=$(sed -n 's/^interpreter //p' $BINFMT/qemu-aarch64)
FLAGS=$(sed -n 's/^flags: //p' $BINFMT/qemu-aarch64)
log "qemu: $(qemu-aarch64-static --version | head -1); binfmt interpreter $INTERP, flags $FLAGS"

# --- 2. the arm64 userland (cached) -----------------------------------------------------------------
mounted() { grep -q " $ROOT/$1 " /proc/mounts; }
unmount_all() {
    local m
    for m in dev/pts dev proc sys; do mounted $m && umount -l "$ROOT/$m"; done
    return 0
}
trap unmount_all EXIT
unmount_all
STAMP="$SUITE arm64 $PKGS"
if [ "${AARCH64_FRESH:-0}" = 1 ] || [ "$(cat "$ROOT/.edgecodec-rootfs" 2>/dev/null)" != "$STAMP" ]; then
    log "debootstrap $SUITE arm64 into $ROOT (first stage: download and unpack)"
    rm -rf "$ROOT"
    mkdir -p "$CACHE"
    debootstrap --arch=arm64 --foreign --variant=minbase --include=$PKGS $SUITE "$ROOT" "$MIRROR" \
        >"$CACHE/debootstrap1.log" 2>&1 || { tail -20 "$CACHE/debootstrap1.log"; die "debootstrap first stage"; }
    case "$FLAGS" in *F*) ;; *) install -D "$(readlink -f "$INTERP")" "$ROOT$INTERP" ;; esac
    log "debootstrap second stage (configures the packages, under qemu)"
    chroot "$ROOT" /debootstrap/debootstrap --second-stage >"$CACHE/debootstrap2.log" 2>&1 \
        || { tail -20 "$CACHE/debootstrap2.log"; die "debootstrap second stage"; }
    echo "$STAMP" > "$ROOT/.edgecodec-rootfs"
else
    log "reusing the arm64 userland in $ROOT (AARCH64_FRESH=1 rebuilds it)"
fi
case "$FLAGS" in *F*) ;; *) install -D "$(readlink -f "$INTERP")" "$ROOT$INTERP" ;; esac
mount -t proc proc "$ROOT/proc"
mount --bind /dev "$ROOT/dev"
mount --bind /dev/pts "$ROOT/dev/pts"
# No /sys: with the host's sysfs in view, Codec.load segfaults under qemu-user (LiteRT reading a CPU
# topology that is not the emulated CPU's). Boards have their own /sys; this is emulation only.
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
# pip inside trusts what the host trusts (a CI network may intercept TLS with its own CA) and uses its proxy.
cp -L "${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}" "$ROOT/etc/ssl/host-ca.crt"
PASS=(PIP_CERT=/etc/ssl/host-ca.crt SSL_CERT_FILE=/etc/ssl/host-ca.crt)
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY PIP_INDEX_URL; do
    [ -n "${!v:-}" ] && PASS+=("$v=${!v}")
done
arm() {  # run a command in the arm64 root, with a clean environment
    chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=$VENV/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONFAULTHANDLER=1 "${PASS[@]}" "$@"
}
arm /bin/sh -c 'echo "arm64 userland: $(uname -m), $(python3 --version), $(gcc --version | head -1)"'

# --- 3. the source tree and the install, as on a board ----------------------------------------------
log "copying the source tree (tracked and untracked, not ignored files) to /src/edgecodec"
rm -rf "$ROOT/src/edgecodec"
mkdir -p "$ROOT/src/edgecodec"
git ls-files -z -co --exclude-standard | tar --null --ignore-failed-read -T - -cf - 2>/dev/null \
    | tar -xf - -C "$ROOT/src/edgecodec"
find "$ROOT/src/edgecodec" -name '*.so' -delete  # (none: they are ignored) the tests must use the arm64 build
[ -x "$ROOT$VENV/bin/python" ] || arm python3 -m venv $VENV
log "pip install -U pip; pip install /src/edgecodec (compiles the C extensions with arm64 gcc)"
{ arm python -m pip install -U pip && arm python -m pip install /src/edgecodec pytest pytest-timeout; } \
    >"$CACHE/pip.log" 2>&1 || { tail -40 "$CACHE/pip.log"; die "pip install under aarch64"; }
grep -E "^Successfully installed|manylinux.*aarch64" "$CACHE/pip.log" | sed 's/^/  /'
arm /bin/sh -c "cd / && python -c '
import platform, numpy, cv2, ai_edge_litert, edgecodec.entropy._rangecoder as rc, edgecodec.models._fixedpoint as fx
from edgecodec.models import int8
from edgecodec.codec import Codec
c = Codec.load()
print(\"installed on\", platform.machine(), \"python\", platform.python_version(), \"numpy\", numpy.__version__,
      \"opencv\", cv2.__version__, \"ai-edge-litert\", ai_edge_litert.__version__ if hasattr(ai_edge_litert, \"__version__\") else \"?\")
print(\"  C extensions:\", rc.__file__, fx.__file__)
print(\"  model\", c.model_id.hex(), \"| int8 analysis on\", type(c.bundle.encoder(4)).__name__,
      \"| synthesis on\", type(c.bundle.decoder()).__name__,
      \"| hyper-synthesis products on the AVX2 int8 kernel:\", int8.AVAILABLE, \"(float32, exact, on ARM)\")
'"
ln -sf $VENV/bin/edgecodec "$ROOT/usr/local/bin/edgecodec"  # as docs/arm.md installs it for systemd/*.service
arm python -m pip list 2>/dev/null | grep -iE '^(ai-edge-litert|numpy|opencv-python-headless|pip) ' | sed 's/^/  /'

# --- 4. the tests under aarch64 ----------------------------------------------------------------------
if [ $GOLDEN = 1 ]; then  # first, so that the tests below check the new set on both machines
    log "re-recording tests/data/aarch64 from the aarch64 encoder"
    rm -rf "$ROOT/golden"
    arm python /src/edgecodec/tests/test_aarch64_golden.py write /golden
    rm -rf tests/data/aarch64 "$ROOT/src/edgecodec/tests/data/aarch64"
    mkdir -p tests/data/aarch64
    cp "$ROOT"/golden/* tests/data/aarch64/
    cp -r tests/data/aarch64 "$ROOT/src/edgecodec/tests/data/aarch64"
    du -cb tests/data/aarch64/* | tail -1
fi
# As .ci/run does on x86: the tests run against an editable install (the extensions built in place by
# arm64 gcc), since some start `python -c` in the source tree, where its edgecodec/ comes first.
arm python -m pip install -e /src/edgecodec >"$CACHE/pip-e.log" 2>&1 || { tail -40 "$CACHE/pip-e.log"; die "pip install -e"; }
log "pytest under aarch64: ${TESTS[*]}"
arm /bin/sh -c "cd /src/edgecodec && pytest -q -p no:cacheprovider -o addopts=-ra --timeout=1800 ${TESTS[*]}" \
    || die "tests under aarch64"

# --- 5. bit-exactness, both ways ---------------------------------------------------------------------
# The same source pixels on both machines: generated once on x86 (TestScene draws with OpenCV, whose
# resize and anti-aliasing differ between ARM and x86) and read by both as .npy files from /xcheck/sources.
# Must hold: identical bytes, identical decoded integer latents, identical decoded pixels (and the PSNR
# within 0.05 dB); where pixels differ, the max abs difference is reported.
XC=$ROOT/xcheck
rm -rf "$XC"
mkdir -p "$XC"
FAILED=()
log "cross-check: the wide set's sources, generated on x86"
"$PY" tests/test_aarch64_golden.py sources "$XC/sources"
log "cross-check: encode and decode the wide set on aarch64 and on x86"
arm python /src/edgecodec/tests/test_aarch64_golden.py write /xcheck/arm --sources /xcheck/sources
"$PY" tests/test_aarch64_golden.py write "$XC/x86" --sources "$XC/sources"
log "cross-check: x86 decodes aarch64's packets (and compares its own bytes with aarch64's)"
"$PY" tests/test_aarch64_golden.py check "$XC/arm" --mine "$XC/x86" --json "$XC/x86_checks_arm.json" \
    | tee "$XC/x86_checks_arm.txt" || FAILED+=("aarch64 -> x86")
log "cross-check: aarch64 decodes x86's packets (and compares its own bytes with x86's)"
arm python /src/edgecodec/tests/test_aarch64_golden.py check /xcheck/x86 --mine /xcheck/arm \
    --json /xcheck/arm_checks_x86.json | tee "$XC/arm_checks_x86.txt" || FAILED+=("x86 -> aarch64")
log "cross-check: the CLI (/usr/local/bin/edgecodec, as the systemd units call it) on both machines"
"$PY" -c "
import cv2, sys; sys.path.insert(0, 'tests'); from test_aarch64_golden import source
cv2.imwrite('$XC/cli.png', cv2.cvtColor(source(401, 301, 1234567), cv2.COLOR_RGB2BGR))"
X86CLI=$(dirname "$PY")/edgecodec
arm /usr/local/bin/edgecodec encode /xcheck/cli.png -o /xcheck/cli_arm.ecc -q 5
"$X86CLI" encode "$XC/cli.png" -o "$XC/cli_x86.ecc" -q 5
arm /usr/local/bin/edgecodec decode /xcheck/cli_x86.ecc -o /xcheck/cli_x86_on_arm.png
"$X86CLI" decode "$XC/cli_arm.ecc" -o "$XC/cli_arm_on_x86.png"
arm /usr/local/bin/edgecodec decode /xcheck/cli_arm.ecc -o /xcheck/cli_arm_on_arm.png
"$X86CLI" decode "$XC/cli_x86.ecc" -o "$XC/cli_x86_on_x86.png"
cmp "$XC/cli_arm.ecc" "$XC/cli_x86.ecc" || FAILED+=("CLI: aarch64 and x86 wrote different .ecc bytes")
echo "CLI: .ecc $(stat -c %s "$XC/cli_arm.ecc") bytes on aarch64, $(stat -c %s "$XC/cli_x86.ecc") on x86"
"$PY" - "$XC" <<'EOF' || FAILED+=("CLI: an .ecc decodes to other pixels on aarch64 and x86")
import sys, cv2, numpy as np
xc = sys.argv[1]
differ = False
r = lambda n: cv2.imread(f"{xc}/{n}.png", cv2.IMREAD_UNCHANGED).astype(np.int16)
src = r("cli")
p = lambda i: 10 * np.log10(255 ** 2 / np.mean((i - src) ** 2.0))
for a, b in (("cli_arm_on_x86", "cli_arm_on_arm"), ("cli_x86_on_arm", "cli_x86_on_x86")):
    x, y = r(a), r(b)
    d = np.abs(x - y)
    print(f"CLI: {a}.png vs {b}.png: " + ("identical" if not d.any() else
          f"{np.count_nonzero(d)} of {d.size} values differ, max |d| {d.max()}, PSNR {p(x):.4f} vs {p(y):.4f} dB"))
    differ = differ or bool(d.any())
sys.exit(1 if differ else 0)
EOF
log "cross-check summary"
"$PY" - "$XC" <<'EOF' | tee "$XC/summary.txt"
import json, sys
xc = sys.argv[1]
for name, way in (("x86_checks_arm", "encoded on aarch64, decoded on x86"),
                  ("arm_checks_x86", "encoded on x86, decoded on aarch64")):
    c = json.load(open(f"{xc}/{name}.json"))
    n, rows = c["counts"], c["cases"]
    total = n["stills"] + n["frames"]
    diff = [r for r in rows if not r["pixels_equal"]]
    worst = max((r["max_abs_diff"] for r in diff), default=0)
    dpsnr = max((abs(r["psnr_here"] - r["psnr_there"]) for r in rows), default=0)
    print(f"{way}: {n['stills']} stills + {n['frames']} frames of {n['streams']} streams; identical bytes "
          f"{n['bytes_equal']}/{total}, latents {n['latents_equal']}/{total}, pixels {n['pixels_equal']}/{total} "
          f"(where they differ: max |d| {worst}, PSNR difference at most {dpsnr:.4f} dB)")
    for line in c["required_failures"]:
        print("  DIFFERS:", line)
EOF
[ ${#FAILED[@]} = 0 ] || die "cross-check: ${FAILED[*]}"
log "aarch64 run passed"
