#!/usr/bin/env bash
# Installs what cross/build.sh, cross/qemu-smoke.sh and cross/qemu-e2e.sh
# need on a Debian machine: the cross C compilers (the linker for armv7, and
# the C parts of `ring` for both targets), their C libraries, QEMU user mode,
# and the two Rust standard libraries. Run as root (or with sudo available).
#
#   cross/install-prereqs.sh
#
# Nothing else in the repository runs this; build.sh only checks.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

APT_PACKAGES=(
  gcc-arm-linux-gnueabihf   # arm-linux-gnueabihf-gcc: armv7 linker + ring's C/asm
  gcc-aarch64-linux-gnu     # aarch64-linux-gnu-gcc: ring's C/asm for aarch64 musl
  libc6-dev-armhf-cross     # static glibc for armv7 (+crt-static)
  libc6-dev-arm64-cross     # headers for the aarch64 C compiler
  qemu-user                 # qemu-arm, qemu-aarch64 (user mode)
)
RUST_TARGETS=(
  armv7-unknown-linux-gnueabihf
  aarch64-unknown-linux-musl
)

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-prereqs: run as root (apt-get needs it) or install sudo" >&2
    exit 1
  fi
fi

echo "== apt-get update"
"${SUDO[@]}" apt-get update -q
echo "== apt-get install ${APT_PACKAGES[*]}"
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}"

if ! command -v rustup >/dev/null 2>&1; then
  echo "install-prereqs: rustup not found; install the Rust toolchain with rustup first" >&2
  exit 1
fi
# Run from the workspace so a rust-toolchain file there (if any) is honoured.
cd "$(dirname "$0")/.."
echo "== rustup target add ${RUST_TARGETS[*]}"
rustup target add "${RUST_TARGETS[@]}"
echo "== rustup component add rust-src"
rustup component add rust-src

echo "== done; now run cross/build.sh"
