//! `AddCommandKey` and `RemoveCommandKey`: the cloud rotates the keys that
//! sign its commands by command (SPEC §6.2). The rules that keep a device
//! reachable are enforced here: a key is added only under a free id and
//! while the ring has room, and removed only by a command signed with
//! another key, so the ring never empties and the cloud always holds a key
//! the device accepts.
//!
//! Who may send them follows `RestoreState`, the other cloud-administrative
//! command: the cloud acting for the account that holds the device (its
//! owner, or its site installer before handover; any account of the
//! device's region while it is unbound), and also while the device is
//! `behind`. The signature is the real authority (whoever holds a key can
//! sign any command); naming the holder ties the change to an account in
//! the audit and keeps a shared user or an installer after handover from
//! asking for it.

use hc_protocol::envelope::{CommandKeys, PUBLIC_KEY_LEN};
use hc_protocol::{AccountRef, Reason};

use super::changes::Change;
use super::SignedWith;
use crate::core::state::DeviceState;

/// The ring after adding `public_key` under `key_id`, or why not.
pub(super) fn add(
    state: &DeviceState,
    actor: &AccountRef,
    signed: Option<SignedWith<'_>>,
    key_id: u8,
    public_key: &[u8; PUBLIC_KEY_LEN],
) -> Result<Change, Reason> {
    let ring = ring_for(state, actor, signed)?;
    match ring.get(key_id) {
        // The same key again (a re-issued rotation step): nothing to do.
        Some(held) if held == public_key => return Ok(Change::none()),
        Some(_) => return Err(Reason::CommandKeyIdInUse),
        None => {}
    }
    let mut next = ring.clone();
    if !next.pin(key_id, *public_key) {
        // The id is free (checked above), so the ring is full.
        return Err(Reason::CapacityExceeded);
    }
    Ok(Change::keys(next))
}

/// The ring after removing the key under `key_id`, or why not.
pub(super) fn remove(
    state: &DeviceState,
    actor: &AccountRef,
    signed: Option<SignedWith<'_>>,
    key_id: u8,
) -> Result<Change, Reason> {
    let ring = ring_for(state, actor, signed)?;
    if ring.get(key_id).is_none() {
        return Err(Reason::KeyNotHeld);
    }
    // Only a command signed with another held key removes one: the signer
    // stays, so the ring is never empty and the cloud can still sign.
    if signed.is_some_and(|s| s.key_id == key_id) {
        return Err(Reason::KeyRemovesItself);
    }
    let mut next = ring.clone();
    next.remove(key_id);
    Ok(Change::keys(next))
}

/// The device's current ring, once the actor may change it: the holder of
/// the device, and a command whose signing key is known.
fn ring_for<'a>(
    state: &'a DeviceState,
    actor: &AccountRef,
    signed: Option<SignedWith<'a>>,
) -> Result<&'a CommandKeys, Reason> {
    let holder = state.access.owner().or(state.access.installer());
    if holder.is_some_and(|h| h.id != actor.id) {
        return Err(Reason::NotOwner);
    }
    let signed = signed.ok_or(Reason::UnknownKeyId)?;
    Ok(state.key_ring(signed.configured))
}

#[cfg(test)]
mod tests {
    use hc_protocol::envelope::{CommandKeys, CommandSigner};
    use hc_protocol::limits::MAX_COMMAND_KEYS;
    use hc_protocol::messages::Binding;
    use hc_protocol::{
        AccountId, AccountRef, Command, CommandBody, InstallerGrants, Outcome, Reason, Region,
        Serial, Text,
    };
    use proptest::prelude::*;

    use super::super::{apply, apply_signed, Applied, SignedWith};
    use crate::core::effects::Effect;
    use crate::core::state::{DeviceState, Identity};

    const T0: u64 = 1_800_000_000;

    fn key(id: u8) -> [u8; 32] {
        CommandSigner::from_seed(id, &[id; 32])
            .unwrap()
            .public_key()
    }

    /// The configuration pins key 1.
    fn configured() -> CommandKeys {
        let mut keys = CommandKeys::new();
        assert!(keys.pin(1, key(1)));
        keys
    }

    fn account(id: &str) -> AccountRef {
        AccountRef {
            id: AccountId::new(id).unwrap(),
            region: Region::new("EU").unwrap(),
        }
    }

    /// Owned by alice.
    fn owned() -> DeviceState {
        let mut state = DeviceState::new(Identity {
            serial: Serial::new("NVR-KEYS").unwrap(),
            region: Region::new("EU").unwrap(),
            channel_count: 4,
            verification_code: Text::new("ABCDEF").unwrap(),
        })
        .unwrap();
        state.access.binding = Binding::Owned {
            owner: account("alice"),
            installer: None,
            installer_grants: InstallerGrants::default(),
        };
        state
    }

    fn add(id: u8) -> CommandBody {
        CommandBody::AddCommandKey {
            key_id: id,
            public_key: key(id),
        }
    }

    fn remove(id: u8) -> CommandBody {
        CommandBody::RemoveCommandKey { key_id: id }
    }

    /// `body` as `actor`, under the next sequence number, signed with key
    /// `signer`.
    fn run(state: &DeviceState, actor: &str, body: CommandBody, signer: u8) -> Applied {
        let command = Command {
            serial: state.identity.serial.clone(),
            actor: account(actor),
            seq: state.ledger.last_seq + 1,
            issued_at: T0,
            body,
        };
        let configured = configured();
        let signed = SignedWith {
            key_id: signer,
            configured: &configured,
        };
        apply_signed(state, &command, Some(signed), T0)
    }

    fn ids(state: &DeviceState) -> Vec<u8> {
        state.key_ring(&configured()).ids().to_vec()
    }

    fn refused_untouched(before: &DeviceState, applied: &Applied, reason: Reason) {
        assert_eq!(applied.outcome, Outcome::Refused(reason));
        assert_eq!(applied.state.command_keys, before.command_keys);
        assert_eq!(applied.state.access, before.access);
        assert!(!applied.effects.contains(&Effect::PublishState));
    }

    #[test]
    fn a_key_is_added_under_a_free_id_stored_first_and_reported() {
        let state = owned();
        assert_eq!(state.command_keys, None, "the configuration's keys");
        let added = run(&state, "alice", add(2), 1);
        assert_eq!(added.outcome, Outcome::Accepted);
        assert_eq!(ids(&added.state), [1, 2]);
        assert_eq!(
            added.state.command_keys.as_ref().and_then(|k| k.get(2)),
            Some(&key(2))
        );
        // Stored before the ack, then the report with the new ids.
        assert_eq!(added.effects[0], Effect::Persist);
        assert!(matches!(added.effects[1], Effect::Ack(_)));
        assert!(added.effects.contains(&Effect::PublishState));
        // The new key now signs too.
        let by_new = run(&added.state, "alice", CommandBody::RequestState, 2);
        assert_eq!(by_new.outcome, Outcome::Accepted);
    }

    #[test]
    fn the_same_key_again_under_its_id_changes_nothing() {
        let state = run(&owned(), "alice", add(2), 1).state;
        let again = run(&state, "alice", add(2), 1);
        assert_eq!(again.outcome, Outcome::Accepted);
        assert_eq!(again.state.command_keys, state.command_keys);
    }

    #[test]
    fn an_id_in_use_is_refused() {
        let state = owned();
        let other = CommandBody::AddCommandKey {
            key_id: 1,
            public_key: key(7),
        };
        let refused = run(&state, "alice", other, 1);
        refused_untouched(&state, &refused, Reason::CommandKeyIdInUse);
        assert_eq!(ids(&refused.state), [1]);
    }

    #[test]
    fn a_full_ring_takes_no_other_key() {
        let mut state = owned();
        for id in 2..=MAX_COMMAND_KEYS as u8 {
            state = run(&state, "alice", add(id), 1).state;
        }
        assert_eq!(ids(&state).len(), MAX_COMMAND_KEYS);
        let refused = run(&state, "alice", add(99), 1);
        refused_untouched(&state, &refused, Reason::CapacityExceeded);
    }

    #[test]
    fn a_key_is_removed_by_a_command_signed_with_another_key() {
        let state = run(&owned(), "alice", add(2), 1).state;
        let removed = run(&state, "alice", remove(1), 2);
        assert_eq!(removed.outcome, Outcome::Accepted);
        assert_eq!(ids(&removed.state), [2]);
        assert_eq!(removed.effects[0], Effect::Persist);
        assert!(removed.effects.contains(&Effect::PublishState));
    }

    #[test]
    fn a_key_cannot_remove_itself() {
        let state = run(&owned(), "alice", add(2), 1).state;
        let refused = run(&state, "alice", remove(2), 2);
        refused_untouched(&state, &refused, Reason::KeyRemovesItself);
        // The configuration's single key cannot go either.
        let alone = owned();
        let refused = run(&alone, "alice", remove(1), 1);
        refused_untouched(&alone, &refused, Reason::KeyRemovesItself);
        assert_eq!(ids(&refused.state), [1]);
    }

    #[test]
    fn an_id_the_device_does_not_hold_is_refused() {
        let state = owned();
        let refused = run(&state, "alice", remove(9), 1);
        refused_untouched(&state, &refused, Reason::KeyNotHeld);
    }

    #[test]
    fn only_the_holder_of_the_device_changes_keys_and_any_account_while_unbound() {
        let state = owned();
        let refused = run(&state, "mallory", add(2), 1);
        refused_untouched(&state, &refused, Reason::NotOwner);
        let refused = run(&state, "mallory", remove(1), 2);
        refused_untouched(&state, &refused, Reason::NotOwner);
        let mut unbound = owned();
        unbound.access.binding = Binding::Unbound;
        assert_eq!(
            run(&unbound, "factory", add(2), 1).outcome,
            Outcome::Accepted
        );
    }

    #[test]
    fn key_commands_are_taken_while_the_state_is_behind() {
        let mut state = owned();
        state.behind = true;
        let added = run(&state, "alice", add(2), 1);
        assert_eq!(added.outcome, Outcome::Accepted);
        assert!(added.state.behind, "only a restore clears it");
        let share = CommandBody::UnshareAll;
        assert_eq!(
            run(&added.state, "alice", share, 2).outcome,
            Outcome::Refused(Reason::StateBehind)
        );
    }

    #[test]
    fn without_a_known_signer_the_ring_does_not_change() {
        let state = owned();
        let command = Command {
            serial: state.identity.serial.clone(),
            actor: account("alice"),
            seq: 1,
            issued_at: T0,
            body: add(2),
        };
        let refused = apply(&state, &command, T0);
        refused_untouched(&state, &refused, Reason::UnknownKeyId);
    }

    #[test]
    fn once_set_by_command_the_ring_ignores_the_configuration() {
        let state = run(&owned(), "alice", add(2), 1).state;
        let mut other = CommandKeys::new();
        assert!(other.pin(5, key(5)));
        assert_eq!(state.key_ring(&other).ids().as_slice(), [1, 2]);
        assert_eq!(owned().key_ring(&other).ids().as_slice(), [5]);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever key commands arrive, signed by whichever key the device
        /// holds, it never holds zero keys nor more than the limit, and a
        /// refusal leaves the ring as it was.
        #[test]
        fn the_ring_never_empties(steps in proptest::collection::vec((any::<bool>(), 0u8..6, 0u8..6), 1..40)) {
            let mut state = owned();
            for (adding, id, signer_pick) in steps {
                let held = ids(&state);
                let signer = held[usize::from(signer_pick) % held.len()];
                let body = if adding { add(id) } else { remove(id) };
                let applied = run(&state, "alice", body, signer);
                if applied.outcome != Outcome::Accepted {
                    prop_assert_eq!(&applied.state.command_keys, &state.command_keys);
                }
                state = applied.state;
                let now_held = ids(&state);
                prop_assert!(!now_held.is_empty());
                prop_assert!(now_held.len() <= MAX_COMMAND_KEYS);
                prop_assert!(now_held.contains(&signer), "the signer stays");
            }
        }
    }
}
