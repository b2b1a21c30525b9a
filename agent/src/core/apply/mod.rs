//! Applying a verified cloud command to the device state. Who may change
//! what is enforced here, on the device, whatever the cloud believes.
//!
//! Every command is first checked against the ledger: a redelivery of a
//! recently handled command gets its first outcome again without being
//! applied twice; an older or replayed sequence number is refused and
//! changes nothing at all. A fresh command is then applied or refused; a
//! refusal leaves the access state unchanged and is recorded in the ledger
//! so that its redelivery is answered the same way.

use hc_protocol::envelope::CommandKeys;
use hc_protocol::messages::{AuditActor, AuditEntry, AuditEvent};
use hc_protocol::{Ack, Command, CommandBody, Outcome, Reason};

use super::effects::{Effect, Effects};
use super::state::DeviceState;
use changes::{change_for, Change};

mod changes;
mod installer;
mod keys;
mod restore;

/// How a verified command was signed: what the key commands (`AddCommandKey`,
/// `RemoveCommandKey`) depend on.
#[derive(Debug, Clone, Copy)]
pub struct SignedWith<'a> {
    /// The envelope's key id: the key whose signature verified.
    pub key_id: u8,
    /// The configuration's keys, the ring while the state holds none of its
    /// own (`DeviceState::key_ring`).
    pub configured: &'a CommandKeys,
}

/// The result of handling one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The state to keep once the effects are carried out.
    pub state: DeviceState,
    /// The command's outcome (the first one, for a redelivery).
    pub outcome: Outcome,
    /// The command had been handled before: it was answered again, not
    /// applied, and `state` is unchanged.
    pub redelivered: bool,
    /// In order; ends with the acknowledgement.
    pub effects: Effects,
    /// What to record in the audit ring.
    pub audit: AuditEntry,
    /// For an accepted, fresh `InstallCertificate`: the certificate (DER),
    /// which the caller checks and stores before it carries out the
    /// effects, or refuses the command with [`Applied::refuse`]. Checking
    /// it takes the device CA and the key the device asked a certificate
    /// for, which the credential store holds, not the device state.
    pub certificate: Option<Vec<u8>>,
}

impl Applied {
    /// Turns an accepted command into a refusal for `reason` found by the
    /// caller (a certificate that does not pass its checks): the ledger,
    /// the acknowledgement and the audit entry say so, the state is
    /// otherwise unchanged (the command only recorded its outcome), and the
    /// certificate is dropped.
    pub fn refuse(&mut self, reason: Reason) {
        let outcome = Outcome::Refused(reason);
        self.outcome = outcome;
        self.audit.outcome = outcome;
        self.certificate = None;
        for effect in self.effects.iter_mut() {
            if let Effect::Ack(ack) = effect {
                ack.outcome = outcome;
                if let Some(seq) = ack.seq {
                    self.state.ledger.amend(seq, outcome);
                }
            }
        }
        self.effects
            .retain(|effect| matches!(effect, Effect::Persist | Effect::Ack(_)));
    }

    /// The caller could not store what the command carries (a certificate
    /// write failed): as when a state cannot reach flash, nothing is kept
    /// (the state stays `before`, so the same envelope can come again) and
    /// the command is acknowledged `StorageFailed`.
    pub fn fail_storage(&mut self, before: &DeviceState) {
        let outcome = Outcome::Refused(Reason::StorageFailed);
        self.state = before.clone();
        self.effects = super::effects::storage_failed(&self.effects);
        self.outcome = outcome;
        self.audit.outcome = outcome;
        self.certificate = None;
    }
}

/// Handles a command verified elsewhere at device time `now`, without
/// knowing which key signed it (tests, the simulator's set-up, benchmarks):
/// as [`apply_signed`], except that a key command is refused with
/// `UnknownKeyId`, since the key ring may only change under a known key.
pub fn apply(state: &DeviceState, command: &Command, now: u64) -> Applied {
    apply_signed(state, command, None, now)
}

/// Handles a verified command at device time `now`, signed as `signed`
/// says (`None`: by a key not known here; see [`apply`]).
pub fn apply_signed(
    state: &DeviceState,
    command: &Command,
    signed: Option<SignedWith<'_>>,
    now: u64,
) -> Applied {
    let audit = |outcome| AuditEntry {
        at: now,
        actor: AuditActor::Cloud(command.actor.id.clone()),
        event: AuditEvent::Command {
            kind: command.body.kind(),
            seq: command.seq,
        },
        outcome,
    };
    let refuse_untouched = |reason| {
        let outcome = Outcome::Refused(reason);
        Applied {
            state: state.clone(),
            outcome,
            redelivered: false,
            effects: ack_only(Some(command.seq), outcome, false),
            audit: audit(outcome),
            certificate: None,
        }
    };

    if command.serial != state.identity.serial {
        return refuse_untouched(Reason::WrongDevice);
    }
    if let Some(outcome) = state.ledger.outcome_of(command.seq) {
        return Applied {
            state: state.clone(),
            outcome,
            redelivered: true,
            effects: ack_only(Some(command.seq), outcome, true),
            audit: audit(outcome),
            certificate: None,
        };
    }
    if command.seq <= state.ledger.last_seq {
        return refuse_untouched(Reason::ReplayedSequence);
    }

    let mut next = state.clone();
    next.clock.vouch(command.issued_at);
    let result = change_for(state, command, signed, now);
    let outcome = Outcome::from_result(&result);
    next.ledger.record(command.seq, outcome);

    let effects = fresh_effects(command, outcome, &mut next, result);
    let certificate = match (&command.body, outcome) {
        (CommandBody::InstallCertificate { certificate }, Outcome::Accepted) => {
            Some(certificate.to_vec())
        }
        _ => None,
    };
    Applied {
        state: next,
        outcome,
        redelivered: false,
        effects,
        audit: audit(outcome),
        certificate,
    }
}

/// The effects of a fresh command, in order: persist (unless read-only),
/// acknowledge, then what the change asks for; the change goes into `next`.
fn fresh_effects(
    command: &Command,
    outcome: Outcome,
    next: &mut DeviceState,
    result: Result<Change, Reason>,
) -> Effects {
    let mut effects = Effects::new();
    let read_only = matches!(
        command.body,
        CommandBody::Operation { .. }
            | CommandBody::RequestState
            | CommandBody::RequestAudit { .. }
    );
    // Read-only commands are not written to flash on their own: operations
    // can be frequent and flash wears. Their ledger entry reaches flash with
    // the next change; a crash before that can at worst re-answer one.
    if !read_only {
        push(&mut effects, Effect::Persist);
    }
    push(
        &mut effects,
        Effect::Ack(Ack {
            seq: Some(command.seq),
            outcome,
            redelivered: false,
        }),
    );
    if let Ok(change) = result {
        if matches!(command.body, CommandBody::RestoreState { .. }) {
            next.behind = false;
        }
        let reported = change.access.is_some() || change.keys.is_some();
        if let Some(access) = change.access {
            next.access = access;
        }
        if let Some(keys) = change.keys {
            next.command_keys = Some(keys);
        }
        // The report carries the access state and the key ids.
        if reported {
            push(&mut effects, Effect::PublishState);
        }
        if let Some(extra) = change.extra {
            push(&mut effects, extra);
        }
    }
    effects
}

fn ack_only(seq: Option<u64>, outcome: Outcome, redelivered: bool) -> Effects {
    let mut effects = Effects::new();
    push(
        &mut effects,
        Effect::Ack(Ack {
            seq,
            outcome,
            redelivered,
        }),
    );
    effects
}

fn push(effects: &mut Effects, effect: Effect) {
    // Effects has room for the most any step produces (see effects.rs).
    let _ = effects.push(effect);
}
