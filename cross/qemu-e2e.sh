#!/usr/bin/env bash
# End-to-end tests of the cross-built hc-agent under QEMU user mode: the
# daemon tests in agent/tests/daemon.rs (embedded TLS MQTT broker on
# loopback, test cloud signing commands, local socket clients) run on the
# host as usual, but the agent they start is the ARM binary from
# cross/build.sh, run through cross/qemu-agent.sh (HC_AGENT_BIN). Then the
# C client's test program (clients/c), cross-compiled for the same target,
# runs under QEMU against that agent (agent/tests/c_client.rs).
#
#   cross/build.sh && cross/qemu-e2e.sh
#   cross/qemu-e2e.sh TRIPLE...          # only these targets
#
# Prints PASS, FAIL or SKIP per target and exits non-zero if any target
# failed. A target whose QEMU is not installed is skipped, except with
# CI=true, where that is a failure. A missing cross binary is always a
# failure (run cross/build.sh first).
#
# Environment:
#   HC_QEMU_E2E_RETRIES  how often a failed test is run again on its own
#                        (default 1). A test that passes on a retry is
#                        reported as FLAKY by name; the target still passes.
#                        Set 0 to make any failure final.
#
# Full test output: <target dir>/qemu-e2e/<triple>.log
set -euo pipefail

# shellcheck source=cross/targets.sh
source "$(dirname "$0")/targets.sh"
# The C client's test program (clients/c), cross-compiled static with
# -Wall -Wextra -Werror and run under QEMU against the ARM agent by
# agent/tests/c_client.rs (HC_C_CLIENT_TEST, HC_C_CLIENT_RUNNER).
declare -A CROSS_CC=(
  [aarch64-unknown-linux-musl]=aarch64-linux-gnu-gcc
  [armv7-unknown-linux-gnueabihf]=arm-linux-gnueabihf-gcc
)
C_CLIENT_TEST=the_c_client_authorizes_reads_status_and_gets_a_revocation_notice_from_the_agent
# Provisioning by claim certificate against the ARM binary (key generation
# with ring on the target, the claim ACL of mosquitto, the issued
# certificate checked and used): agent/tests/claim_provisioning.rs.
CLAIM_TEST=a_device_with_only_a_claim_certificate_provisions_itself_and_stays_provisioned

# The daemon tests run against each ARM binary (all of agent/tests/daemon.rs;
# names as printed by `cargo test -p hc-agent --test daemon -- --list`).
TESTS=(
  connects_with_its_client_certificate_and_reports_online_and_state
  a_signed_command_is_applied_persisted_and_acknowledged
  wrong_signature_replay_and_oversized_payload_are_refused_and_change_nothing
  broker_restarts_with_commands_in_flight_lose_and_duplicate_nothing
  the_local_socket_answers_authorize_under_concurrent_clients_and_survives_garbage
  the_last_will_marks_the_device_offline_when_the_agent_is_killed
  sigterm_marks_the_device_offline_and_exits_cleanly
  a_broker_certificate_from_another_ca_is_refused
  platform_access_off_closes_the_link_and_keeps_it_closed_until_on
  the_domain_is_registered_again_after_a_port_change
  the_local_socket_is_created_with_a_mode_that_shuts_out_other_users
)
RETRIES=${HC_QEMU_E2E_RETRIES:-1}
[[ "$RETRIES" =~ ^[0-9]+$ ]] || { echo "qemu-e2e: HC_QEMU_E2E_RETRIES must be a number" >&2; exit 2; }

cd "$(dirname "$0")/.."
WORKSPACE=$PWD
WRAPPER=$WORKSPACE/cross/qemu-agent.sh

if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${DEFAULT_TARGETS[@]}"); fi
for t in "${TARGETS[@]}"; do
  [ -n "${QEMU[$t]:-}" ] || { echo "qemu-e2e: unknown target '$t' (known: ${DEFAULT_TARGETS[*]})" >&2; exit 2; }
done

TARGET_DIR=$(cargo metadata --format-version 1 --no-deps --locked |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$TARGET_DIR" ] || TARGET_DIR=$WORKSPACE/target
LOG_DIR=$TARGET_DIR/qemu-e2e
mkdir -p "$LOG_DIR"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------------------
# The host side: build the test binary once and check the test names.
# ---------------------------------------------------------------------------
echo "== cargo test -p hc-agent --test daemon --test c_client --test claim_provisioning --locked --no-run"
cargo test -p hc-agent --test daemon --test c_client --test claim_provisioning --locked --no-run
listed=$(cargo test -q -p hc-agent --test daemon --locked -- --list 2>/dev/null |
  sed -n 's/^\(.*\): test$/\1/p')
unknown=()
for name in "${TESTS[@]}"; do
  grep -qxF "$name" <<<"$listed" || unknown+=("$name")
done
if [ "${#unknown[@]}" -gt 0 ]; then
  echo "qemu-e2e: FAIL: these tests are not in agent/tests/daemon.rs (renamed?):" >&2
  printf '  %s\n' "${unknown[@]}" >&2
  exit 1
fi
while IFS= read -r name; do
  [ -z "$name" ] && continue
  printf '%s\n' "${TESTS[@]}" | grep -qxF "$name" ||
    echo "qemu-e2e: note: daemon test '$name' is not run under QEMU (add it to TESTS in $0)"
done <<<"$listed"

# run_tests TARGET LOG CALLS NAME...: the named daemon tests against the
# target's binary under QEMU; output appended to LOG. Returns cargo's status.
run_tests() {
  local t=$1 log=$2 calls=$3
  shift 3
  HC_AGENT_BIN=$WRAPPER \
    HC_CROSS_TARGET=$t \
    HC_CROSS_BIN=$TARGET_DIR/cross/$t/release/hc-agent \
    HC_CROSS_CALL_LOG=$calls \
    cargo test -p hc-agent --test daemon --locked -- --exact "$@" --test-threads=1 \
    >>"$log" 2>&1
}

# run_c_client TARGET LOG CALLS: the C client test program, built for the
# target, against the target's agent, both under QEMU. Returns non-zero
# on a failure (output appended to LOG).
run_c_client() {
  local t=$1 log=$2 calls=$3 cc=${CROSS_CC[$1]} program=$LOG_DIR/hc_client_test-$1
  echo "==== qemu-e2e: C client ($cc -static, ${QEMU[$t]} -cpu ${CPU[$t]})" >>"$log"
  command -v "$cc" >/dev/null 2>&1 || { echo "$cc not installed" >>"$log"; return 1; }
  "$cc" -std=c99 -Wall -Wextra -Werror -pedantic -O2 -static \
    -o "$program" "$WORKSPACE/clients/c/hc_client_test.c" "$WORKSPACE/clients/c/hc_agent_client.c" \
    >>"$log" 2>&1 || return 1
  HC_AGENT_BIN=$WRAPPER \
    HC_CROSS_TARGET=$t \
    HC_CROSS_BIN=$TARGET_DIR/cross/$t/release/hc-agent \
    HC_CROSS_CALL_LOG=$calls \
    HC_C_CLIENT_TEST=$program \
    HC_C_CLIENT_RUNNER="${QEMU[$t]} -cpu ${CPU[$t]}" \
    cargo test -p hc-agent --test c_client --locked -- --exact "$C_CLIENT_TEST" \
    >>"$log" 2>&1 && grep -q "^test $C_CLIENT_TEST ... ok$" "$log"
}

# run_claim TARGET LOG CALLS: the claim provisioning test against the
# target's agent under QEMU (mosquitto on the host).
run_claim() {
  local t=$1 log=$2 calls=$3
  echo "==== qemu-e2e: claim provisioning" >>"$log"
  HC_AGENT_BIN=$WRAPPER \
    HC_CROSS_TARGET=$t \
    HC_CROSS_BIN=$TARGET_DIR/cross/$t/release/hc-agent \
    HC_CROSS_CALL_LOG=$calls \
    cargo test -p hc-agent --test claim_provisioning --locked -- --exact "$CLAIM_TEST" \
    >>"$log" 2>&1 && grep -q "^test $CLAIM_TEST ... ok$" "$log"
}

declare -A VERDICT DETAIL
overall=0

for t in "${TARGETS[@]}"; do
  q=${QEMU[$t]}
  bin=$TARGET_DIR/cross/$t/release/hc-agent
  log=$LOG_DIR/$t.log
  calls=$LOG_DIR/$t.calls
  : >"$log"
  : >"$calls"
  echo
  echo "== $t: ${#TESTS[@]} daemon tests, agent: $q -cpu ${CPU[$t]} $bin"

  if ! command -v "$q" >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
      VERDICT[$t]=FAIL DETAIL[$t]="$q not installed (apt-get install qemu-user); CI=true makes this a failure"
      overall=1
    else
      VERDICT[$t]=SKIP DETAIL[$t]="$q not installed (apt-get install qemu-user)"
    fi
    continue
  fi
  if [ ! -x "$bin" ]; then
    VERDICT[$t]=FAIL DETAIL[$t]="no $bin (run cross/build.sh $t first)"
    overall=1
    continue
  fi
  version=$(HC_CROSS_TARGET=$t HC_CROSS_BIN=$bin timeout 30 "$WRAPPER" --version 2>&1) || true
  case "$version" in
    "hc-agent "*) echo "   $q $($q --version | head -n1 | sed 's/.*version //'): $version" ;;
    *)
      VERDICT[$t]=FAIL DETAIL[$t]="the binary does not run under $q: $version"
      overall=1
      continue
      ;;
  esac

  started=$(now)
  if run_tests "$t" "$log" "$calls" "${TESTS[@]}"; then :; fi
  passed=$(sed -n 's/^test \([A-Za-z0-9_]*\) \.\.\. ok$/\1/p' "$log" | sort -u)
  failed=()
  for name in "${TESTS[@]}"; do
    grep -qxF "$name" <<<"$passed" || failed+=("$name")
  done
  # A test cargo never reported on counts as failed (e.g. a crash of the
  # test binary), so it is retried like one that failed.
  flaky=()
  final=()
  for name in ${failed[@]+"${failed[@]}"}; do
    ok=0
    for ((i = 1; i <= RETRIES; i++)); do
      echo "   retry $i/$RETRIES: $name"
      echo "==== qemu-e2e: retry $i of $name" >>"$log"
      if run_tests "$t" "$log" "$calls" "$name"; then ok=1; break; fi
    done
    if [ "$ok" -eq 1 ]; then flaky+=("$name"); else final+=("$name"); fi
  done
  c_client=passed
  if ! run_c_client "$t" "$log" "$calls"; then
    c_client=FAILED
    final+=("C-client:$C_CLIENT_TEST")
  fi
  claim=passed
  if ! run_claim "$t" "$log" "$calls"; then
    claim=FAILED
    final+=("$CLAIM_TEST")
  fi
  secs=$(elapsed "$started")
  starts=$(wc -l <"$calls")

  if [ "${#final[@]}" -gt 0 ]; then
    VERDICT[$t]=FAIL
    DETAIL[$t]="$((${#TESTS[@]} - ${#final[@]}))/${#TESTS[@]} passed in ${secs}s; failed: ${final[*]}"
    overall=1
    echo "---- failures (from $log) ----"
    sed -n '/^failures:$/,/^test result:/p' "$log" | head -n 400
  elif [ "$starts" -eq 0 ]; then
    # The tests passed without starting the wrapper: they did not test the
    # ARM binary at all (HC_AGENT_BIN no longer honoured by the harness?).
    VERDICT[$t]=FAIL DETAIL[$t]="the tests never started $WRAPPER (is HC_AGENT_BIN still honoured?)"
    overall=1
  else
    VERDICT[$t]=PASS
    DETAIL[$t]="${#TESTS[@]}/${#TESTS[@]} passed, the C client $c_client, claim provisioning $claim, in ${secs}s ($starts agent starts under $q)"
    if [ "${#flaky[@]}" -gt 0 ]; then
      DETAIL[$t]+="; FLAKY (failed, then passed on a retry): ${flaky[*]}"
    fi
  fi
  echo "   ${VERDICT[$t]}: ${DETAIL[$t]}"
done

echo
echo "qemu-e2e summary (logs in $LOG_DIR):"
for t in "${TARGETS[@]}"; do
  printf '  %-4s %-31s %s\n' "${VERDICT[$t]}" "$t" "${DETAIL[$t]}"
done
exit "$overall"
