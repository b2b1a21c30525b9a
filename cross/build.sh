#!/usr/bin/env bash
# Cross-builds the hc-agent daemon for the recorder targets, checks that each
# binary is a static ELF for the right machine, prints each stripped size
# against its budget, and fails if a binary is over budget.
#
#   cross/build.sh                 # both targets
#   cross/build.sh TRIPLE...       # only these targets
#   cross/build.sh --host ...      # also build the host binary, size for reference
#
# Exit status: 0 all binaries built, static and below budget; 1 a binary is
# over its budget (all binaries were still built and checked); 2 a
# prerequisite is missing; 3 a binary is not a static ELF for its machine;
# anything else: cargo failed (its status).
#
# Installs nothing: cross/install-prereqs.sh does that on Debian.
#
# Everything target-specific is set as environment variables for the cargo
# commands run here, never in a global .cargo/config.toml, so host builds
# (`cargo build`, `cargo test`) are unaffected. Output stays in the normal
# target dir: target/cross/<triple>/release/hc-agent.
set -euo pipefail

# ---------------------------------------------------------------------------
# Size budgets, in bytes, for the stripped static binary. "MB" here means
# 10^6 bytes (the stricter reading): 1.5 MB = 1,500,000 bytes.
# ---------------------------------------------------------------------------
declare -A BUDGET=(
  [aarch64-unknown-linux-musl]=1500000    # 1.5 MB
  [armv7-unknown-linux-gnueabihf]=1600000 # 1.6 MB
)
DEFAULT_TARGETS=(aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf)

PACKAGE=hc-agent
BIN=hc-agent

# The standard library is rebuilt for the device (cargo's build-std, from the
# rust-src component of the same stable toolchain; RUSTC_BOOTSTRAP=1 lets
# stable cargo use it), without std's default features: that drops std's
# backtrace symbolizer (gimli, addr2line, miniz: about 150 KB on aarch64),
# which the panic hook would otherwise pull in. A panic still prints its
# message and location, then aborts (panic = "abort"); only the symbolized
# backtrace is gone, and with no unwind tables (force-unwind-tables=no)
# there would be none to print. Without this the binaries are 1.67 MB
# (aarch64) and 1.83 MB (armv7), over budget. Nightly cannot do it instead:
# it ships no aarch64-unknown-linux-musl standard library, whose
# self-contained musl start files the link needs.
BUILD_STD=(-Zbuild-std=std,panic_abort -Zbuild-std-features=)

# Per-target settings (checked by hand on this machine kind; see
# ../shared/TOOLCHAIN.md).
#   CROSS_PREFIX: the Debian cross binutils/gcc prefix (ring's C parts, strip)
#   MACHINE:      what `<prefix>-readelf -h` must report as Machine
#   CLASS:        ELF class
declare -A CROSS_PREFIX=(
  [aarch64-unknown-linux-musl]=aarch64-linux-gnu
  [armv7-unknown-linux-gnueabihf]=arm-linux-gnueabihf
)
declare -A MACHINE=(
  [aarch64-unknown-linux-musl]=AArch64
  [armv7-unknown-linux-gnueabihf]=ARM
)
declare -A CLASS=(
  [aarch64-unknown-linux-musl]=ELF64
  [armv7-unknown-linux-gnueabihf]=ELF32
)

# The environment for one target's cargo build, as NAME=VALUE words for `env`.
# The RUSTFLAGS go into CARGO_TARGET_<TRIPLE>_RUSTFLAGS so they apply to that
# target only (never to build scripts or proc macros built for the host).
target_env() {
  case "$1" in
    aarch64-unknown-linux-musl)
      # musl targets link statically by default; rust-lld links against the
      # self-contained musl shipped with the target's standard library. The
      # Debian glibc cross gcc only compiles ring's C/asm (no libc calls).
      echo CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
      echo "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS=-C force-unwind-tables=no"
      echo CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
      echo AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar
      ;;
    armv7-unknown-linux-gnueabihf)
      # Static glibc from libc6-dev-armhf-cross.
      echo CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
      # Thumb-2 code (every ARMv7-A core runs it): about a fifth smaller.
      echo "CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUSTFLAGS=-C target-feature=+crt-static,+thumb-mode -C force-unwind-tables=no"
      echo CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc
      echo AR_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-ar
      ;;
    *)
      echo "build.sh: unknown target $1 (known: ${!BUDGET[*]})" >&2
      return 1
      ;;
  esac
}

cd "$(dirname "$0")/.."
WORKSPACE=$PWD

die() { echo "build.sh: $*" >&2; exit 3; }

HOST_REFERENCE=0
TARGETS=()
for arg in "$@"; do
  case "$arg" in
    --host) HOST_REFERENCE=1 ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    -*) echo "build.sh: unknown option $arg" >&2; exit 2 ;;
    *) TARGETS+=("$arg") ;;
  esac
done
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=("${DEFAULT_TARGETS[@]}")
for t in "${TARGETS[@]}"; do
  [ -n "${BUDGET[$t]:-}" ] || { echo "build.sh: unknown target '$t' (known: ${DEFAULT_TARGETS[*]})" >&2; exit 2; }
done

# ---------------------------------------------------------------------------
# Prerequisites: check, explain, never install.
# ---------------------------------------------------------------------------
missing=()
command -v cargo >/dev/null 2>&1 || missing+=("cargo (install Rust with rustup)")
if command -v rustup >/dev/null 2>&1; then
  installed_targets=$(rustup target list --installed 2>/dev/null || true)
else
  installed_targets=""
fi
[ -d "$(rustc --print sysroot 2>/dev/null)/lib/rustlib/src/rust/library" ] ||
  missing+=("the standard library's source (rustup component add rust-src)")
for t in "${TARGETS[@]}"; do
  if command -v rustup >/dev/null 2>&1; then
    grep -qx "$t" <<<"$installed_targets" ||
      missing+=("Rust standard library for $t (rustup target add $t)")
  elif command -v rustc >/dev/null 2>&1; then
    [ -d "$(rustc --print sysroot)/lib/rustlib/$t/lib" ] ||
      missing+=("Rust standard library for $t (no rustup: install rust-std for $t)")
  fi
  p=${CROSS_PREFIX[$t]}
  if ! command -v "$p-gcc" >/dev/null 2>&1; then
    missing+=("$p-gcc for $t (apt-get install gcc-$p)")
  elif [ "$t" = armv7-unknown-linux-gnueabihf ] &&
    [ "$("$p-gcc" -print-file-name=libc.a)" = libc.a ]; then
    # +crt-static links glibc's libc.a from the cross C library package.
    missing+=("static glibc for $t (apt-get install libc6-dev-armhf-cross)")
  fi
  for tool in strip readelf; do
    command -v "$p-$tool" >/dev/null 2>&1 ||
      missing+=("$p-$tool for $t (apt-get install binutils-$p)")
  done
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "build.sh: missing prerequisites:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  echo "On Debian, cross/install-prereqs.sh installs all of them (as root)." >&2
  exit 2
fi

# Flags given to the whole environment would override the per-target ones
# (cargo: RUSTFLAGS wins over target.<triple>.rustflags) and could drop
# +crt-static, so they are not used here.
for v in RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS; do
  if [ -n "${!v:-}" ]; then
    echo "build.sh: note: ignoring $v from the environment (per-target flags are set here)" >&2
    unset "$v"
  fi
done

TARGET_DIR=$(cargo metadata --format-version 1 --no-deps --locked |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$TARGET_DIR" ] || TARGET_DIR=$WORKSPACE/target
# A target dir of its own: a std rebuilt with other features must not meet
# host release artifacts built without build-std (seen here: a shared dir
# linked musl's printf without its f128 helpers).
CROSS_DIR=$TARGET_DIR/cross

echo "== commit $(git -C "$WORKSPACE" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(
  [ -n "$(git -C "$WORKSPACE" status --porcelain 2>/dev/null)" ] && echo ' (with uncommitted changes)')"
echo "== $(rustc --version)"

# ---------------------------------------------------------------------------
# Build and check each target.
# ---------------------------------------------------------------------------
declare -A SIZE_BUILT SIZE_STRIPPED SIZE_CHECKED VERDICT
fail=0

# One cargo command for all targets: cargo builds them in parallel (each
# target's final LTO step is single-threaded), and every setting above is
# per target, so they do not interfere.
envs=()
target_args=()
for t in "${TARGETS[@]}"; do
  mapfile -t -O "${#envs[@]}" envs < <(target_env "$t")
  target_args+=(--target "$t")
done
echo
echo "== RUSTC_BOOTSTRAP=1 cargo build --release --locked ${BUILD_STD[*]} -p $PACKAGE --bin $BIN ${target_args[*]}"
printf '   %s\n' "${envs[@]}"
started=$SECONDS
env RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$CROSS_DIR" "${envs[@]}" cargo build --release --locked "${BUILD_STD[@]}" \
  -p "$PACKAGE" --bin "$BIN" "${target_args[@]}"
build_secs=$((SECONDS - started))

for t in "${TARGETS[@]}"; do
  echo
  echo "== $t"
  out=$CROSS_DIR/$t/release/$BIN
  [ -f "$out" ] || die "$t: expected $out after the build"

  # Static ELF for the right machine: class and machine from the header,
  # no program interpreter, no shared-library dependencies.
  readelf=${CROSS_PREFIX[$t]}-readelf
  hdr=$("$readelf" -h "$out")
  grep -q "Class:[[:space:]]*${CLASS[$t]}" <<<"$hdr" ||
    die "$t: $out is not ${CLASS[$t]}: $(grep Class: <<<"$hdr")"
  grep -q "Machine:[[:space:]]*${MACHINE[$t]}\$" <<<"$hdr" ||
    die "$t: $out is not for ${MACHINE[$t]}: $(grep Machine: <<<"$hdr")"
  if "$readelf" -l "$out" | grep -q INTERP; then
    die "$t: $out has a program interpreter (dynamically linked)"
  fi
  if "$readelf" -d "$out" 2>/dev/null | grep -q '(NEEDED)'; then
    die "$t: $out needs shared libraries: $("$readelf" -d "$out" | grep NEEDED | tr -s ' ')"
  fi
  # file(1) is optional (not on every build machine); readelf decided above.
  if command -v file >/dev/null 2>&1; then
    echo "   $(file -b "$out")"
  else
    echo "   static ${CLASS[$t]} ${MACHINE[$t]} executable (no INTERP, no NEEDED)"
  fi

  # The release profile strips (strip = true); strip again with the cross
  # binutils to confirm nothing is left, and report both sizes.
  SIZE_BUILT[$t]=$(stat -c %s "$out")
  "${CROSS_PREFIX[$t]}-strip" -o "$out.stripped" "$out"
  SIZE_STRIPPED[$t]=$(stat -c %s "$out.stripped")

  # The budget applies to the artifact as built (the larger of the two) and
  # is exclusive: the binary must be smaller than it.
  size=${SIZE_BUILT[$t]}
  if [ "${SIZE_STRIPPED[$t]}" -gt "$size" ]; then size=${SIZE_STRIPPED[$t]}; fi
  SIZE_CHECKED[$t]=$size
  if [ "$size" -lt "${BUDGET[$t]}" ]; then
    VERDICT[$t]=OK
  else
    VERDICT[$t]=OVER
    fail=1
  fi
done

# ---------------------------------------------------------------------------
# Host build for reference (dynamically linked, no budget).
# ---------------------------------------------------------------------------
if [ "$HOST_REFERENCE" -eq 1 ]; then
  echo
  echo "== cargo build --release -p $PACKAGE --bin $BIN (host, for reference)"
  cargo build --release --locked -p "$PACKAGE" --bin "$BIN"
  host_out=$TARGET_DIR/release/$BIN
  host_triple=$(rustc -vV | sed -n 's/^host: //p')
  host_size=$(stat -c %s "$host_out")
fi

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
echo
echo "Stripped sizes in bytes; each must be below its budget (MB = 1,000,000 bytes)."
echo "BUILT is target/<triple>/release/$BIN (release profile, strip = true); RE-STRIPPED"
echo "is a copy stripped again with <cross>-strip (equal when the profile stripped all)."
printf '%-32s %12s %12s %12s  %s\n' TARGET BUILT RE-STRIPPED BUDGET RESULT
for t in "${TARGETS[@]}"; do
  printf '%-32s %12d %12d %12d  %s\n' "$t" "${SIZE_BUILT[$t]}" "${SIZE_STRIPPED[$t]}" \
    "${BUDGET[$t]}" "${VERDICT[$t]}"
done
if [ "$HOST_REFERENCE" -eq 1 ]; then
  printf '%-32s %12d %12s %12s  %s\n' "$host_triple" "$host_size" - - "reference (host, dynamic)"
fi
echo "(cross build: ${build_secs}s of wall time)"

if [ "$fail" -ne 0 ]; then
  echo
  for t in "${TARGETS[@]}"; do
    [ "${VERDICT[$t]}" = OVER ] &&
      echo "build.sh: $t: $BIN is ${SIZE_CHECKED[$t]} bytes, not below its budget of ${BUDGET[$t]} (over by $((SIZE_CHECKED[$t] - BUDGET[$t])))" >&2
  done
  exit 1
fi
