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

use super::apply::{apply, Applied};
use super::effects::{Effect, Effects};
use super::state::DeviceState;

/// Handles one command envelope received at device time `now`. An envelope
/// that cannot be opened changes nothing and is answered with an
/// acknowledgement without a sequence number.
pub fn handle_command(
    state: &DeviceState,
    payload: &[u8],
    keys: &CommandKeys,
    now: u64,
) -> Applied {
    match envelope::open(payload, keys, &state.identity.serial) {
        Ok(command) => apply(state, &command, now),
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
        signer().seal(&command).unwrap()
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
