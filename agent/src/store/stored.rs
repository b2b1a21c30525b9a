//! What the store can keep: a value with its current payload encoding and a
//! way to read the payloads older agents wrote, so an update never loses
//! the state on flash.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::file_format::FormatError;
use crate::core::state::{AccessState, Identity, Ledger};
use crate::core::time::TrustedClock;
use crate::core::DeviceState;

/// A value kept in a state file.
pub trait Stored: Serialize + DeserializeOwned {
    /// The value from the payload of a file of format `version`, older than
    /// `FORMAT_VERSION` and at least `OLDEST_READABLE_VERSION`.
    fn upgrade(version: u16, payload: &[u8]) -> Result<Self, FormatError>;
}

/// Decodes `payload` as exactly one `T`, nothing after it.
pub(super) fn decode_whole<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FormatError> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(payload).map_err(|e| FormatError::Payload(e.to_string()))?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(FormatError::Payload(format!(
            "{} bytes after the state",
            rest.len()
        )))
    }
}

/// The device state as format version 1 wrote it: without `behind`.
#[derive(Deserialize)]
struct DeviceStateV1 {
    identity: Identity,
    access: AccessState,
    ledger: Ledger,
    clock: TrustedClock,
}

/// The device state as format version 2 wrote it: without `command_keys`.
#[derive(Deserialize)]
struct DeviceStateV2 {
    identity: Identity,
    access: AccessState,
    ledger: Ledger,
    clock: TrustedClock,
    behind: bool,
}

impl Stored for DeviceState {
    fn upgrade(version: u16, payload: &[u8]) -> Result<Self, FormatError> {
        let v2 = match version {
            1 => {
                let v1 = decode_whole::<DeviceStateV1>(payload)?;
                DeviceStateV2 {
                    identity: v1.identity,
                    access: v1.access,
                    ledger: v1.ledger,
                    clock: v1.clock,
                    // A version 1 file was the agent's own current state.
                    behind: false,
                }
            }
            2 => decode_whole::<DeviceStateV2>(payload)?,
            other => return Err(FormatError::UnsupportedVersion(other)),
        };
        Ok(DeviceState {
            identity: v2.identity,
            access: v2.access,
            ledger: v2.ledger,
            clock: v2.clock,
            behind: v2.behind,
            // Agents before version 3 had no key commands: the keys were
            // the configuration's, and stay so until the first key command.
            command_keys: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use hc_protocol::envelope::{CommandKeys, CommandSigner};
    use hc_protocol::limits::MAX_COMMAND_KEYS;
    use proptest::prelude::*;
    use serde::Serialize;

    use super::*;
    use crate::core::state::tests::device;
    use crate::store::{file_format, Loaded, RealFlash, StateStore};

    /// A state file the format-2 agent wrote (`testdata/state-v2.bin`):
    /// `state::tests::device()` with ledger entries 41 (accepted) and 42
    /// (refused), the floor vouched to 1 800 000 000, and `behind` set.
    const V2_FILE: &[u8] = include_bytes!("testdata/state-v2.bin");

    fn v2_expected() -> DeviceState {
        let mut state = device();
        state.ledger.record(41, hc_protocol::Outcome::Accepted);
        state.ledger.record(
            42,
            hc_protocol::Outcome::Refused(hc_protocol::Reason::NotOwner),
        );
        state.clock.vouch(1_800_000_000);
        state.behind = true;
        state
    }

    fn keys(ids: &[u8]) -> CommandKeys {
        let mut keys = CommandKeys::new();
        for &id in ids {
            let key = CommandSigner::from_seed(id, &[id; 32]).unwrap();
            assert!(keys.pin(id, key.public_key()));
        }
        keys
    }

    #[test]
    fn a_version_2_file_loads_with_the_configurations_keys() {
        let (version, payload) = file_format::decode_any(V2_FILE).unwrap();
        assert_eq!(version, 2);
        let state = DeviceState::upgrade(version, payload).unwrap();
        assert_eq!(state, v2_expected());
        assert_eq!(state.command_keys, None);
    }

    #[test]
    fn a_version_2_file_on_flash_loads_and_the_next_save_keeps_it_as_the_previous_copy() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state"), V2_FILE).unwrap();
        let mut store = StateStore::new(RealFlash, dir.path().to_owned(), "state");
        let Loaded::Main(mut state) = store.load::<DeviceState>().unwrap() else {
            panic!("the version 2 file is the main state");
        };
        assert_eq!(state, v2_expected());
        state.command_keys = Some(keys(&[2]));
        store.save(&state).unwrap();
        // The old file stays as the fall-back copy, still readable.
        let prev = std::fs::read(dir.path().join("state.prev")).unwrap();
        assert_eq!(prev, V2_FILE);
        let Loaded::Main(again) = store.load::<DeviceState>().unwrap() else {
            panic!("the version 3 file is the main state");
        };
        assert_eq!(again, state);
    }

    /// A version 1 payload: the version 2 one without `behind`.
    #[test]
    fn a_version_1_payload_loads_not_behind() {
        #[derive(Serialize)]
        struct V1<'a> {
            identity: &'a Identity,
            access: &'a AccessState,
            ledger: &'a Ledger,
            clock: &'a TrustedClock,
        }
        let expected = v2_expected();
        let payload = postcard::to_allocvec(&V1 {
            identity: &expected.identity,
            access: &expected.access,
            ledger: &expected.ledger,
            clock: &expected.clock,
        })
        .unwrap();
        let state = DeviceState::upgrade(1, &payload).unwrap();
        assert_eq!(
            state,
            DeviceState {
                behind: false,
                ..expected
            }
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any ring a device can hold comes back from flash as it was.
        #[test]
        fn the_key_ring_survives_a_store_round_trip(
            ids in proptest::collection::btree_set(any::<u8>(), 1..=MAX_COMMAND_KEYS),
            set in any::<bool>(),
        ) {
            let mut state = device();
            let ids: Vec<u8> = ids.into_iter().collect();
            state.command_keys = set.then(|| keys(&ids));
            let dir = tempfile::tempdir().unwrap();
            let mut store = StateStore::new(RealFlash, dir.path().to_owned(), "state");
            store.save(&state).unwrap();
            prop_assert_eq!(store.load::<DeviceState>().unwrap(), Loaded::Main(state));
        }
    }
}
