#!/usr/bin/env bash
# Runs each cross-built hc-agent under QEMU user mode (Debian's qemu-user)
# and checks its command line: `--version`, `--help`, and that an unknown
# option is refused. The binaries are static, so no -L sysroot is given.
#
#   cross/build.sh && cross/qemu-smoke.sh
#   cross/qemu-smoke.sh TRIPLE...      # only these targets
#
# Exit status: 0 all checks passed, 1 a check failed, 2 a prerequisite
# (QEMU or a built binary) is missing.
set -euo pipefail

# shellcheck source=cross/targets.sh
source "$(dirname "$0")/targets.sh"
PACKAGE=hc-agent
BIN=hc-agent
TIMEOUT=30 # seconds per run; QEMU start-up is slow but not that slow

cd "$(dirname "$0")/.."

if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${DEFAULT_TARGETS[@]}"); fi

metadata=$(cargo metadata --format-version 1 --no-deps --locked)
TARGET_DIR=$(sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' <<<"$metadata")
# cargo metadata lists each package as {"name":...,"version":...,...}.
VERSION=$(grep -o "\"name\":\"$PACKAGE\",\"version\":\"[^\"]*\"" <<<"$metadata" |
  sed 's/.*"version":"\([^"]*\)"/\1/' | head -n1)
if [ -z "$TARGET_DIR" ] || [ -z "$VERSION" ]; then
  echo "qemu-smoke: could not read the target dir or $PACKAGE version from cargo metadata" >&2
  exit 2
fi

missing=()
for t in "${TARGETS[@]}"; do
  q=${QEMU[$t]:-}
  if [ -z "$q" ]; then
    echo "qemu-smoke: unknown target '$t' (known: ${DEFAULT_TARGETS[*]})" >&2
    exit 2
  fi
  command -v "$q" >/dev/null 2>&1 || missing+=("$q (apt-get install qemu-user, or cross/install-prereqs.sh)")
  [ -x "$TARGET_DIR/cross/$t/release/$BIN" ] || missing+=("$TARGET_DIR/cross/$t/release/$BIN (run cross/build.sh)")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "qemu-smoke: missing prerequisites:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 2
fi

failures=0
pass() { printf '  ok    %s\n' "$*"; }
fail() { printf '  FAIL  %s\n' "$*"; failures=$((failures + 1)); }

# run TARGET ARGS...: runs that target's binary under its QEMU; sets OUT
# (stdout+stderr) and RC; never aborts the script.
run() {
  local t=$1
  shift
  set +e
  OUT=$(timeout "$TIMEOUT" "${QEMU[$t]}" -cpu "${CPU[$t]}" "$TARGET_DIR/cross/$t/release/$BIN" "$@" \
    </dev/null 2>&1)
  RC=$?
  set -e
}

for t in "${TARGETS[@]}"; do
  echo "== $t under ${QEMU[$t]} -cpu ${CPU[$t]} ($("${QEMU[$t]}" --version | head -n1))"

  run "$t" --version
  if [ "$RC" -eq 0 ] && [ "$(head -n1 <<<"$OUT")" = "hc-agent $VERSION" ]; then
    pass "--version: $(head -n1 <<<"$OUT")"
  else
    fail "--version: expected exit 0 and first line 'hc-agent $VERSION'; got exit $RC, output: $OUT"
  fi

  run "$t" --help
  if [ "$RC" -ne 0 ]; then
    fail "--help: exit $RC (expected 0), output: $OUT"
  elif ! grep -qi 'usage' <<<"$OUT"; then
    fail "--help: no usage text, output: $OUT"
  elif ! grep -q -- '--check-config' <<<"$OUT"; then
    fail "--help: does not mention --check-config, output: $OUT"
  else
    pass "--help: $(head -n1 <<<"$OUT")"
  fi

  run "$t" --no-such-option
  if [ "$RC" -eq 124 ]; then
    fail "--no-such-option: still running after ${TIMEOUT}s (expected a quick refusal)"
  elif [ "$RC" -eq 0 ]; then
    fail "--no-such-option: exit 0 (expected non-zero), output: $OUT"
  else
    pass "--no-such-option: refused with exit $RC"
  fi
done

if [ "$failures" -ne 0 ]; then
  echo "qemu-smoke: $failures check(s) failed" >&2
  exit 1
fi
echo "qemu-smoke: all checks passed"
