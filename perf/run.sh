#!/usr/bin/env bash
# Performance report for hc-agent, side by side with the tools users would
# otherwise pick (issue 8). One command:
#
#     perf/run.sh
#
# Builds what it needs (release), runs every measurement on this machine
# and writes a markdown report to stdout and to target/perf-report.md
# (details of the run in target/perf-details.log).
#
#   1. access decisions: agent::core::decide vs cedar-policy (perf/, its own
#      Cargo.lock; built into target/perf, as the daemon measurements of
#      2-5, perf/src/measure.rs)
#   2. memory and size: the agent vs mosquitto_sub, one TLS session each to
#      the same mosquitto
#   3. domain registration: the agent vs inadyn, RSS
#   4. end to end: command -> ack through mosquitto, local-socket authorize
#   5. start-up: spawn -> MQTT connected, spawn -> full list in force
#   6. fleet: `sim-device fleet` (PERF_FLEET_DEVICES devices, default 1000,
#      each with its own TLS session and access list) on mosquitto: connect
#      percentiles, memory per device, command -> ack with all of them
#      connected, the reconnect curve after a broker restart
#   7. access watch: command -> notice to the streaming server with the
#      watch registry full (1,000 revocations), grant end -> notice, RSS
#      (perf/src/watch_latency.rs, the embedded broker)
#
# Needs the Debian packages mosquitto, mosquitto-clients and inadyn; as root
# it installs the missing ones with apt-get. Everything runs on loopback and
# takes about half a minute once built (the first build takes ~10 min on
# 2 cores: the workspace's release profile, then the perf crate).
#
# Environment: PERF_BROKER_NODELAY=0 runs everything with mosquitto's
# default (Nagle's algorithm on the broker's sockets); PERF_OPERATIONS=N
# changes the command sample (default 2000); PERF_FLEET_DEVICES=N the
# fleet size (default 1000; 0 skips the fleet).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
report=target/perf-report.md
details=target/perf-details.log
mkdir -p target

log() { printf 'perf: %s\n' "$*" >&2; }

# ---- the peers
missing=()
command -v mosquitto_sub >/dev/null || missing+=(mosquitto-clients)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v inadyn >/dev/null || [ -x /usr/sbin/inadyn ] || missing+=(inadyn)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing ${missing[*]}"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    else
        log "missing Debian packages: ${missing[*]} (apt-get install ${missing[*]})"
        exit 1
    fi
fi

# ---- builds, one after the other (one release build at a time)
log "building hc-agent (release)"
cargo build --release --locked -p hc-agent --bin hc-agent >&2
log "building the Cedar comparison and the daemon measurements (perf/, release)"
# Not --locked: perf/Cargo.lock follows the path dependencies (hc-agent,
# hc-protocol, hc-testkit) as their manifests change.
cargo build --release --manifest-path perf/Cargo.toml --target-dir target/perf \
    --bin cedar-compare --bin measure --bin watch-latency >&2
fleet_devices=${PERF_FLEET_DEVICES:-1000}
if [ "$fleet_devices" -gt 0 ]; then
    log "building the simulator (sim profile) for the fleet"
    cargo build --profile sim --locked -p sim-device --bin sim-device >&2
fi

# ---- runs
: >"$details"
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "1/5 access decisions: decide vs cedar-policy"
if ! target/perf/release/cedar-compare >>"$rows" 2> >(tee -a "$details" >&2); then
    cat "$rows" >&2
    log "FAILED: agent::core::decide and cedar-policy disagree (see above)"
    exit 1
fi
log "2/5 daemon: memory, size, domain registration, end to end, start-up"
HC_AGENT_BIN="$root/target/release/hc-agent" target/perf/release/measure \
    >>"$rows" 2> >(tee -a "$details" >&2)
sleep 0.2 # let tee finish
# The device build: static musl, std rebuilt as cross/build.sh does. Its
# memory is the figure for a recorder (no shared glibc, no NSS modules).
musl=x86_64-unknown-linux-musl
if rustup target list --installed 2>/dev/null | grep -qx "$musl" &&
    [ -d "$(rustc --print sysroot)/lib/rustlib/src/rust/library" ]; then
    log "3/5 the same daemon figures for the static musl build (as shipped on devices)"
    RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=target/cross CC_x86_64_unknown_linux_musl=gcc \
        CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C force-unwind-tables=no" \
        cargo build --release --locked -Zbuild-std=std,panic_abort -Zbuild-std-features= \
        -p hc-agent --bin hc-agent --target "$musl" >&2
    HC_AGENT_BIN="$root/target/cross/$musl/release/hc-agent" target/perf/release/measure \
        2> >(sed 's/^measure:/measure (static musl):/' | tee -a "$details" >&2) |
        sed -n -e 's/^| 2 | Idle RSS, one TLS session/| 2 | Idle RSS of the static musl build (as on devices), one TLS session/p' \
            -e 's/^| 2 | Size on disk (x86_64, stripped)/| 2 | Size on disk (x86_64 static musl, libc included)/p' >>"$rows"
    sleep 0.2
else
    log "3/5 skipped: rustup target add $musl and rustup component add rust-src for the static build's figures"
fi
if [ "$fleet_devices" -gt 0 ]; then
    commands=$((fleet_devices * 2))
    log "4/5 fleet: $fleet_devices devices, $commands commands, a broker restart (mosquitto)"
    fleet_log=$(mktemp)
    if ! target/sim/sim-device fleet --devices "$fleet_devices" --commands "$commands" --mosquitto \
        >"$fleet_log" 2>&1; then
        cat "$fleet_log" >&2
        log "FAILED: the fleet run (above)"
        exit 1
    fi
    sed 's/^/fleet: /' "$fleet_log" >>"$details"
    cat "$fleet_log" >&2
    # The figures, from the fleet's own summary lines.
    pct='p50 \([0-9.]*\) ms, p90 [0-9.]* ms, p99 \([0-9.]*\) ms, p99.9 \([0-9.]*\) ms, max \([0-9.]*\) ms'
    sed -n "s/^  \([0-9]*\) commands over \([0-9]*\) devices.*: $pct.*/| 4 | Command -> ack over TLS via mosquitto with \2 simulated devices connected (n=\1) p50 \/ p99 \/ p99.9 | \3 ms \/ \4 ms \/ \5 ms |  |  |  |  |  |/p" "$fleet_log" >>"$rows"
    sed -n "s/^  \([0-9]*\)\/[0-9]* connected in \([0-9.]*\) s; connect time $pct.*; \([0-9.]*\) KiB per connected device.*/| 6 | Fleet: \1 devices connected in \2 s; connect p50 \/ p99 \/ max | \3 ms \/ \4 ms \/ \6 ms |  |  |  | within 60 s | |\n| 6 | Fleet: memory per simulated device (RSS growth \/ devices) | \7 KiB |  |  |  | < 64 KiB | |/p" "$fleet_log" >>"$rows"
    sed -n "s/^  \([0-9]*\)\/[0-9]* reconnected, the last \([0-9.]*\) s after the broker was back; peak \([0-9]*\) per 250 ms, mean \([0-9.]*\), peak\/mean \([0-9.]*\).*/| 6 | Fleet: reconnect after a broker restart (default backoff): all \1 back after \2 s; peak \/ mean per 250 ms | \3 \/ \4 = \5 |  |  |  | within 2x | |/p" "$fleet_log" >>"$rows"
    rm -f "$fleet_log"
fi
log "5/5 access watch: 1,000 revocations with the watch registry full, grant ends"
HC_AGENT_BIN="$root/target/release/hc-agent" target/perf/release/watch-latency \
    >>"$rows" 2> >(tee -a "$details" >&2)
sleep 0.2
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the report
cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
{
    echo "# hc-agent performance report"
    echo
    echo "Run by \`perf/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')."
    echo
    echo "- Machine: $(nproc) CPUs (\`nproc\`), ${cpu:-unknown CPU}, $(uname -m)"
    echo "- Kernel: $(uname -sr)"
    echo "- Toolchain: $(rustc --version)"
    echo "- Load average (1, 5, 15 min) before: ${load_before}; after: ${load_after}"
    echo
    echo "| # | Measurement | hc-agent | Peer | Peer figure | Ratio | Target | Met |"
    echo "|---|---|---|---|---|---|---|---|"
    cat "$rows"
    echo
    echo "Details of the run:"
    echo
    echo '```text'
    cat "$details"
    echo '```'
} | tee "$report"
log "written to $report"
