//! Sequences of core inputs, as the agent's event loop feeds them: cloud
//! commands (any `CommandBody`, from an account pool, with fresh, replayed
//! or redelivered sequence numbers and late or early issue times), access
//! decisions, the local platform-access switch, device clock jumps, and
//! domain registration events. Each step goes through the core's own
//! functions (`handle_command` on the sealed envelope, `decide`,
//! `set_platform_access`, `Registrar`) and
//! the invariants below are checked after every step.
//!
//! Input: the first byte picks the starting state (fresh, owned with
//! shares, installer-managed, handed over); the rest is decoded with
//! postcard into up to `MAX_STEPS` `Step`s (decoding stops at the first
//! byte that is not a step). Bodies come straight from the wire decoder,
//! so every field value the protocol allows can appear; the `fix` bits
//! help the fuzzer past the checks it cannot solve by itself (the bind
//! proof's HMAC, accounts that exist on the device).
#![no_main]

use hc_agent::core::domain::{NetworkFacts, Registrar, RegistrarPolicy};
use hc_agent::core::{
    decide, handle_command, role_of, set_platform_access, AuditRing, DeviceState, Effect,
};
use hc_fuzz::{
    check_state, check_usable, keys, pool, proof_for, serial, signer, start_states, KEY_ID, T0,
};
use hc_protocol::access::{Action, Decision, LocalLevel, Principal};
use hc_protocol::codec;
use hc_protocol::ddns::{DomainResult, IpAddress, PortMapping, ServicePorts};
use hc_protocol::limits::{MAX_MESSAGE_BYTES, MAX_PORT_MAPPINGS};
use hc_protocol::local::RegistrationState;
use hc_protocol::{Command, CommandBody, Outcome, Reason, Serial};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

const MAX_STEPS: usize = 64;

#[derive(Debug, Deserialize)]
enum Seq {
    /// The cloud's next number, this far past the last one it issued.
    Next(u8),
    /// This far below the last number the cloud issued (a replay, or a
    /// redelivery when recent).
    Back(u16),
    /// Exactly this number.
    Raw(u64),
}

#[derive(Debug, Deserialize)]
enum Step {
    Command {
        actor: u8,
        // Boxed: a body holds its bounded lists inline (kilobytes).
        body: Box<CommandBody>,
        seq: Seq,
        /// Issued this long before the cloud's current time.
        lag: u16,
        /// bit 0: a valid bind proof for the actor; bit 1: share and
        /// unshare name pool accounts (picked by bits 4..); bit 2: sent to
        /// another serial; bit 3: deliver it twice.
        fix: u8,
    },
    Decide {
        who: u8,
        action: Action,
        channel: Option<u16>,
    },
    Local {
        level: LocalLevel,
        /// Asked through a process on `admin_uids`.
        admin_process: bool,
        enabled: bool,
    },
    /// The cloud's clock moves forward; the device's skew changes.
    Clock {
        forward: u16,
        skew: i32,
    },
    Network {
        connected: bool,
        lan: IpAddress,
        ports: ServicePorts,
        mappings: heapless::Vec<PortMapping, MAX_PORT_MAPPINGS>,
    },
    DomainResult {
        result: DomainResult,
        random: u32,
    },
}

struct Sim {
    state: DeviceState,
    cloud_seq: u64,
    cloud_now: u64,
    skew: i64,
    audit: AuditRing,
    registrar: Registrar,
    last_registration: Option<u64>,
}

impl Sim {
    fn now(&self) -> u64 {
        self.cloud_now.saturating_add_signed(self.skew)
    }

    fn command(&mut self, actor: u8, mut body: CommandBody, seq: Seq, lag: u16, fix: u8) {
        let actor = pool(actor);
        if fix & 1 != 0 {
            if let CommandBody::Bind { proof, .. } = &mut body {
                *proof = proof_for(&actor.id);
            }
        }
        if fix & 2 != 0 {
            let target = pool(fix >> 4);
            match &mut body {
                CommandBody::Share { account, .. } => *account = target,
                CommandBody::Unshare { accounts } => {
                    for (i, a) in accounts.iter_mut().enumerate() {
                        *a = pool((fix >> 4).wrapping_add(i as u8)).id;
                    }
                }
                _ => {}
            }
        }
        let seq = match seq {
            Seq::Next(gap) => {
                self.cloud_seq = self.cloud_seq.saturating_add(u64::from(gap));
                self.cloud_seq
            }
            Seq::Back(back) => self.cloud_seq.saturating_sub(u64::from(back)),
            Seq::Raw(seq) => seq,
        };
        let command = Command {
            serial: if fix & 4 != 0 {
                Serial::new("OTHER-DEVICE").unwrap()
            } else {
                serial()
            },
            actor,
            seq,
            issued_at: self.cloud_now.saturating_sub(u64::from(lag)),
            body,
        };
        // Sealed and opened as the agent receives it: the one command path.
        let envelope = signer(KEY_ID).seal(&command).expect("a command seals");
        let deliveries = if fix & 8 != 0 { 2 } else { 1 };
        let mut first = None;
        for _ in 0..deliveries {
            let now = self.now();
            self.state.clock.observe(now);
            let before = self.state.clone();
            let applied = handle_command(&before, &envelope, keys(), now);
            let fresh = check_applied(&before, &command, &applied);
            if let Some((outcome, true)) = first {
                // A redelivery of a handled command gets the first outcome
                // and changes nothing.
                assert_eq!(applied.outcome, outcome);
                assert!(applied.redelivered);
                assert_eq!(applied.state, before);
            }
            first = Some((applied.outcome, fresh));
            self.state = applied.state;
            self.audit.record(applied.audit);
            for effect in &applied.effects {
                match effect {
                    Effect::RegisterDomain => {
                        self.registrar.set_domain(self.state.access.domain.clone())
                    }
                    Effect::PublishAudit { max } => {
                        let entries = self.audit.recent(*max);
                        assert!(entries.len() <= usize::from(*max));
                        let report = hc_protocol::messages::AuditReport {
                            serial: serial(),
                            entries,
                        };
                        codec::encode(&report, MAX_MESSAGE_BYTES).expect("audit report fits");
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The checks on one applied command; true when it was fresh (handled and
/// recorded).
fn check_applied(
    before: &DeviceState,
    command: &Command,
    applied: &hc_agent::core::Applied,
) -> bool {
    let after = &applied.state;
    // Exactly one acknowledgement, for this command, with its outcome;
    // a persist, if any, comes before it.
    let acks: Vec<_> = applied
        .effects
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Effect::Ack(ack) => Some((i, *ack)),
            _ => None,
        })
        .collect();
    assert_eq!(acks.len(), 1, "{:?}", applied.effects);
    let (ack_at, ack) = acks[0];
    // Another device's command is refused when its envelope is opened,
    // before its sequence number means anything.
    let addressed = command.serial == before.identity.serial;
    assert_eq!(ack.seq, addressed.then_some(command.seq));
    assert_eq!(ack.outcome, applied.outcome);
    assert_eq!(ack.redelivered, applied.redelivered);
    if let Some(p) = applied.effects.iter().position(|e| *e == Effect::Persist) {
        assert!(p < ack_at);
    }
    codec::encode(&ack, MAX_MESSAGE_BYTES).expect("ack fits");
    codec::encode(&applied.audit, MAX_MESSAGE_BYTES).expect("audit entry fits");

    let fresh = command.serial == before.identity.serial
        && before.ledger.outcome_of(command.seq).is_none()
        && command.seq > before.ledger.last_seq;
    if command.serial != before.identity.serial {
        assert_eq!(applied.outcome, Outcome::Refused(Reason::WrongDevice));
    } else if let Some(outcome) = before.ledger.outcome_of(command.seq) {
        assert!(applied.redelivered);
        assert_eq!(applied.outcome, outcome);
    } else if !fresh {
        assert_eq!(applied.outcome, Outcome::Refused(Reason::ReplayedSequence));
    }
    if fresh {
        // Recorded; the trusted time floor follows the issue time.
        assert_eq!(after.ledger.last_seq, command.seq);
        assert_eq!(after.ledger.outcome_of(command.seq), Some(applied.outcome));
        assert!(after.clock.floor() >= command.issued_at);
        if !before.access.platform_access {
            assert_eq!(applied.outcome, Outcome::Refused(Reason::PlatformAccessOff));
        }
    } else {
        // Not fresh: nothing at all changes, not even the clock.
        assert_eq!(after, before);
        assert!(!applied.effects.contains(&Effect::Persist));
    }
    if let Outcome::Refused(_) = applied.outcome {
        assert_eq!(after.access, before.access, "a refusal changed access");
    }
    assert!(after.ledger.last_seq >= before.ledger.last_seq);
    assert!(after.clock.floor() >= before.clock.floor());
    assert_eq!(after.identity, before.identity);
    check_state(after);
    check_usable(after);
    fresh
}

/// The checks on one access decision.
fn check_decision(
    state: &DeviceState,
    principal: &Principal,
    action: Action,
    channel: Option<u16>,
    decision: Decision,
) {
    if decision.is_allow() && action.is_channel_scoped() {
        let c = channel.expect("a channel-scoped allow names a channel");
        assert!(c >= 1 && c <= state.identity.channel_count);
    }
    match principal {
        Principal::Cloud(account) => {
            if decision.is_allow() {
                assert!(state.access.platform_access);
                assert!(role_of(state, account).is_ok());
            }
        }
        Principal::Local(level) => {
            if !action.is_channel_scoped() {
                assert_eq!(decision.is_allow(), level.permissions().contains(action));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&start, mut rest)) = data.split_first() else {
        return;
    };
    let state = start_states()[usize::from(start) % 4].clone();
    let cloud_seq = state.ledger.last_seq;
    let registrar = Registrar::new(state.access.domain.clone(), RegistrarPolicy::default());
    let mut sim = Sim {
        state,
        cloud_seq,
        cloud_now: hc_fuzz::T0,
        skew: 0,
        audit: AuditRing::new(),
        registrar,
        last_registration: None,
    };
    check_state(&sim.state);
    for _ in 0..MAX_STEPS {
        let Ok((step, tail)) = postcard::take_from_bytes::<Step>(rest) else {
            break;
        };
        rest = tail;
        match step {
            Step::Command {
                actor,
                body,
                seq,
                lag,
                fix,
            } => sim.command(actor, *body, seq, lag, fix),
            Step::Decide {
                who,
                action,
                channel,
            } => {
                let principal = match who % 8 {
                    5 => Principal::Local(LocalLevel::Admin),
                    6 => Principal::Local(LocalLevel::Operator),
                    7 => Principal::Local(LocalLevel::Guest),
                    i => Principal::Cloud(pool(i).id),
                };
                let now = sim.now();
                sim.state.clock.observe(now);
                let decision = decide(&sim.state, &principal, action, channel, now);
                check_decision(&sim.state, &principal, action, channel, decision);
            }
            Step::Local {
                level,
                admin_process,
                enabled,
            } => {
                let now = sim.now();
                sim.state.clock.observe(now);
                let (result, audit) =
                    set_platform_access(&sim.state, level, admin_process, enabled, now);
                codec::encode(&audit, MAX_MESSAGE_BYTES).expect("audit entry fits");
                match result {
                    Ok((next, effects)) => {
                        assert!(admin_process);
                        assert_eq!(level, LocalLevel::Admin);
                        assert_eq!(next.access.platform_access, enabled);
                        assert_eq!(
                            effects.is_empty(),
                            sim.state.access.platform_access == enabled
                        );
                        sim.state = next;
                    }
                    Err(Reason::PeerNotAllowed) => assert!(!admin_process),
                    Err(reason) => {
                        assert!(admin_process);
                        assert_ne!(level, LocalLevel::Admin);
                        assert_eq!(reason, Reason::ActionNotGranted);
                    }
                }
                sim.audit.record(audit);
                check_state(&sim.state);
            }
            Step::Clock { forward, skew } => {
                sim.cloud_now = sim.cloud_now.saturating_add(u64::from(forward));
                sim.skew = (sim.skew + i64::from(skew)).clamp(-(T0 as i64), 1 << 40);
            }
            Step::Network {
                connected,
                lan,
                ports,
                mappings,
            } => {
                if connected {
                    sim.registrar.on_connected();
                } else {
                    sim.registrar.on_disconnected();
                }
                let now = sim.now();
                let facts = NetworkFacts {
                    lan_address: lan,
                    ports,
                    mappings,
                };
                let before = sim.registrar.state();
                if let Some(registration) = sim.registrar.observe(facts, now) {
                    assert!(connected);
                    assert!(!matches!(
                        before,
                        RegistrationState::NameTaken | RegistrationState::Invalid
                    ));
                    assert_eq!(registration.domain, sim.state.access.domain);
                    assert_eq!(registration.attempt, sim.registrar.attempt());
                    // Never more often than the minimum interval.
                    if let Some(last) = sim.last_registration {
                        if now >= last {
                            assert!(now - last >= RegistrarPolicy::default().min_interval_secs);
                        }
                    }
                    sim.last_registration = Some(now);
                    codec::encode(&registration, MAX_MESSAGE_BYTES).expect("registration fits");
                    assert_eq!(sim.registrar.state(), RegistrationState::Pending);
                }
            }
            Step::DomainResult { result, random } => {
                let before = sim.registrar.state();
                let attempt = sim.registrar.attempt();
                let now = sim.now();
                sim.registrar.on_result(result, now, random);
                if result.attempt != attempt || before != RegistrationState::Pending {
                    // Stale or unexpected answers are ignored.
                    assert_eq!(sim.registrar.state(), before);
                }
            }
        }
    }
});
