# shellcheck shell=bash
# The ARM targets the cross scripts build and run, and how QEMU user mode
# runs each. Sourced by cross/qemu-smoke.sh and cross/qemu-e2e.sh.

DEFAULT_TARGETS=(aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf)
declare -A QEMU=(
  [aarch64-unknown-linux-musl]=qemu-aarch64
  [armv7-unknown-linux-gnueabihf]=qemu-arm
)
# The emulated CPU: cores typical of recorder SoCs, so an instruction the
# target baseline does not promise would fault here rather than on a device.
declare -A CPU=(
  [aarch64-unknown-linux-musl]=cortex-a53
  [armv7-unknown-linux-gnueabihf]=cortex-a7
)
