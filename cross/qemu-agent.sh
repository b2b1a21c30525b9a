#!/bin/sh
# Runs a cross-built hc-agent under QEMU user mode, passing every argument
# through. It `exec`s QEMU, so the caller's child process IS the emulator:
# SIGTERM/SIGKILL sent to that pid reach the agent (QEMU hands signals to the
# guest program), and the exit status is the agent's.
#
# Usable as the daemon tests' agent program (hc_testkit::daemon::agent_binary
# takes the HC_AGENT_BIN environment variable as the path of the agent to
# start):
#
#   HC_CROSS_TARGET=armv7-unknown-linux-gnueabihf HC_AGENT_BIN=$PWD/cross/qemu-agent.sh \
#     cargo test -p hc-agent --test daemon --locked -- --test-threads=1
#
# Environment:
#   HC_CROSS_TARGET  aarch64-unknown-linux-musl (default) or
#                    armv7-unknown-linux-gnueabihf
#   HC_CROSS_BIN     the binary to run (default:
#                    ${CARGO_TARGET_DIR:-<workspace>/target}/cross/<target>/release/hc-agent,
#                    as built by cross/build.sh)
#   HC_CROSS_CALL_LOG  if set, one line per start is appended to this file
#                    (cross/qemu-e2e.sh uses it to prove QEMU really ran)
#
# The binaries are static, so no -L sysroot is needed. -cpu picks a core
# typical of recorder SoCs, so an instruction outside the target's baseline
# faults here rather than on a device.
target=${HC_CROSS_TARGET:-aarch64-unknown-linux-musl}
case "$target" in
  aarch64-unknown-linux-musl) qemu=qemu-aarch64 cpu=cortex-a53 ;;
  armv7-unknown-linux-gnueabihf) qemu=qemu-arm cpu=cortex-a7 ;;
  *)
    echo "qemu-agent.sh: unknown HC_CROSS_TARGET '$target'" >&2
    exit 127
    ;;
esac
if [ -n "${HC_CROSS_BIN:-}" ]; then
  bin=$HC_CROSS_BIN
else
  here=$(cd "$(dirname "$0")" && pwd)
  bin=${CARGO_TARGET_DIR:-$here/../target}/cross/$target/release/hc-agent
fi
if [ ! -x "$bin" ]; then
  echo "qemu-agent.sh: no $bin (run cross/build.sh $target)" >&2
  exit 127
fi
if [ -n "${HC_CROSS_CALL_LOG:-}" ]; then
  echo "$$ $target $*" >>"$HC_CROSS_CALL_LOG"
fi
exec "$qemu" -cpu "$cpu" "$bin" "$@"
