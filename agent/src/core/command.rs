//! The one path a command envelope takes on the device: open it (the
//! signature over the exact bytes received, the serial, the size), check it
//! against the ledger (redelivery or replay), apply it, and build its audit
//! entry and acknowledgement. The agent, the fleet's simulated devices and
//! the fuzz targets all come through here.
//!
//! What comes out is a plan, not a deed: the caller carries out the effects
//! in order, and the rule that nothing is acknowledged before it reached
//! flash lives in [`storage_failed`](super::storage_failed), which turns
//! the plan into what to do when the `Persist` effect could not be carried
//! out.

use hc_protocol::envelope::{self, CommandKeys};
use hc_protocol::messages::{AuditActor, AuditEntry, AuditEvent};
use hc_protocol::{Ack, Outcome};

use super::apply::{apply_signed, Applied, SignedWith};
use super::effects::{Effect, Effects};
use super::state::DeviceState;

/// Handles one command envelope received at device time `now`. It is
/// verified with the state's key ring, or with `configured` (the
/// configuration's keys) while no key command has set one. An envelope
/// that cannot be opened changes nothing and is answered with an
/// acknowledgement without a sequence number.
pub fn handle_command(
    state: &DeviceState,
    payload: &[u8],
    configured: &CommandKeys,
    now: u64,
) -> Applied {
    let ring = state.key_ring(configured);
    match envelope::open_verified(payload, ring, &state.identity.serial) {
        Ok(verified) => {
            let signed = SignedWith {
                key_id: verified.key_id,
                configured,
            };
            apply_signed(state, &verified.command, Some(signed), now)
        }
        Err(e) => {
            let outcome = Outcome::Refused(e.reason());
            let mut effects = Effects::new();
            // Room for one effect always exists in an empty list.
            let _ = effects.push(Effect::Ack(Ack {
                seq: None,
                outcome,
                redelivered: false,
            }));
            Applied {
                state: state.clone(),
                outcome,
                redelivered: false,
                effects,
                audit: AuditEntry {
                    at: now,
                    actor: AuditActor::Device,
                    event: AuditEvent::EnvelopeRefused,
                    outcome,
                },
                certificate: None,
            }
        }
    }
}

impl Applied {
    /// Whether the new state must reach flash before anything else.
    pub fn needs_persist(&self) -> bool {
        self.effects.contains(&Effect::Persist)
    }

    /// The acknowledgement among the effects, if any.
    pub fn ack(&self) -> Option<Ack> {
        self.effects.iter().find_map(|effect| match effect {
            Effect::Ack(ack) => Some(*ack),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::effects::storage_failed;
    use crate::core::state::Identity;
    use hc_protocol::envelope::CommandSigner;
    use hc_protocol::Reason;
    use hc_protocol::{AccountId, AccountRef, Command, CommandBody, Region, Serial, Text};

    const T0: u64 = 1_800_000_000;

    fn state() -> DeviceState {
        DeviceState::new(Identity {
            serial: Serial::new("NVR-CMD-1").unwrap(),
            region: Region::new("EU").unwrap(),
            channel_count: 4,
            verification_code: Text::new("ABCDEF").unwrap(),
        })
        .unwrap()
    }

    fn signer() -> CommandSigner {
        CommandSigner::from_seed(1, &[3; 32]).unwrap()
    }

    fn keys() -> CommandKeys {
        let mut keys = CommandKeys::new();
        assert!(keys.pin(1, signer().public_key()));
        keys
    }

    fn sealed(seq: u64, body: CommandBody) -> Vec<u8> {
        sealed_by(&signer(), seq, body)
    }

    #[test]
    fn a_forged_envelope_changes_nothing_and_is_refused_without_a_sequence_number() {
        let mut payload = sealed(1, CommandBody::RequestState);
        let last = payload.len() - 1;
        payload[last] ^= 1;
        let before = state();
        let handled = handle_command(&before, &payload, &keys(), T0);
        assert_eq!(handled.state, before);
        assert_eq!(handled.audit.event, AuditEvent::EnvelopeRefused);
        assert_eq!(handled.ack().unwrap().seq, None);
        assert!(matches!(handled.outcome, Outcome::Refused(_)));
        assert!(!handled.needs_persist());
    }

    #[test]
    fn a_good_envelope_is_applied_and_its_redelivery_is_answered_the_same_way() {
        let payload = sealed(1, CommandBody::RequestState);
        let first = handle_command(&state(), &payload, &keys(), T0);
        assert_eq!(first.outcome, Outcome::Accepted);
        let again = handle_command(&first.state, &payload, &keys(), T0 + 1);
        assert!(again.redelivered);
        assert_eq!(again.ack().unwrap().seq, Some(1));
        assert_eq!(again.outcome, Outcome::Accepted);
    }

    fn sealed_by(signer: &CommandSigner, seq: u64, body: CommandBody) -> Vec<u8> {
        let command = Command {
            serial: Serial::new("NVR-CMD-1").unwrap(),
            actor: AccountRef {
                id: AccountId::new("alice").unwrap(),
                region: Region::new("EU").unwrap(),
            },
            seq,
            issued_at: T0,
            body,
        };
        signer.seal(&command).unwrap()
    }

    #[test]
    fn after_a_rotation_the_old_key_is_refused_and_the_new_one_verifies() {
        let next = CommandSigner::from_seed(2, &[4; 32]).unwrap();
        let add = CommandBody::AddCommandKey {
            key_id: 2,
            public_key: next.public_key(),
        };
        let added = handle_command(&state(), &sealed(1, add), &keys(), T0);
        assert_eq!(added.outcome, Outcome::Accepted);
        let remove = CommandBody::RemoveCommandKey { key_id: 1 };
        // Key 1 may not remove itself ...
        let refused = handle_command(&added.state, &sealed(2, remove.clone()), &keys(), T0);
        assert_eq!(refused.outcome, Outcome::Refused(Reason::KeyRemovesItself));
        // ... key 2 may.
        let removed = handle_command(&refused.state, &sealed_by(&next, 3, remove), &keys(), T0);
        assert_eq!(removed.outcome, Outcome::Accepted);
        let state = removed.state;
        // The configuration still pins key 1, but the state's ring rules.
        let old = handle_command(&state, &sealed(4, CommandBody::RequestState), &keys(), T0);
        assert_eq!(old.outcome, Outcome::Refused(Reason::UnknownKeyId));
        assert_eq!(old.ack().unwrap().seq, None);
        assert_eq!(old.audit.event, AuditEvent::EnvelopeRefused);
        let new = handle_command(
            &state,
            &sealed_by(&next, 4, CommandBody::RequestState),
            &keys(),
            T0,
        );
        assert_eq!(new.outcome, Outcome::Accepted);
        assert_eq!(
            new.audit.event,
            AuditEvent::Command {
                kind: hc_protocol::CommandKind::RequestState,
                seq: 4
            }
        );
        assert_eq!(
            state.report("test", 0, &keys()).command_key_ids.as_slice(),
            [2]
        );
    }

    #[test]
    fn when_the_state_cannot_be_written_only_storage_failed_acks_remain() {
        let payload = sealed(
            1,
            CommandBody::SetDomain {
                name: Text::new("porch").unwrap(),
            },
        );
        let handled = handle_command(&state(), &payload, &keys(), T0);
        assert!(handled.needs_persist());
        let fallback = storage_failed(&handled.effects);
        assert_eq!(
            fallback.as_slice(),
            [Effect::Ack(Ack {
                seq: Some(1),
                outcome: Outcome::Refused(Reason::StorageFailed),
                redelivered: false,
            })]
        );
    }
}
