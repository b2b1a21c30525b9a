//! The agent's state file decoder, through the public store API: the
//! bytes become the state file (and sometimes its `.prev` backup) on an
//! in-memory flash, and `StateStore::load::<DeviceState>` reads them, as
//! the agent does at start-up.
//!
//! The first input byte picks the layout:
//! - bit 0 clear: the rest is the state file as found on flash (damaged,
//!   truncated, anything). Random bytes almost never pass the checksum, so
//! - bit 0 set: the rest is the payload of a well-formed file (right
//!   magic, length and checksum; bit 3 sets a wrong format version), which
//!   takes the postcard decoding of `DeviceState`.
//! - bit 1: there is also a good `.prev` copy (the fixture state), which
//!   must be used when the main file is unusable.
//! - bit 2: the main file is missing (only `.prev`, if any).
//!
//! A loaded state must be usable the way the agent uses it: report, save,
//! decide, apply a command, never a panic.
#![no_main]

use std::path::PathBuf;

use hc_agent::core::{apply, decide, DeviceState};
use hc_agent::store::{Loaded, StateStore, StoreError, FORMAT_VERSION};
use hc_fuzz::{check_usable, identity, pool, serial, start_states, state_file, MemFlash, T0};
use hc_protocol::access::{Action, LocalLevel, Principal};
use hc_protocol::{Command, CommandBody};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let dir = PathBuf::from("/state");
    let mut flash = MemFlash::default();
    let main = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let version = if mode & 8 == 0 {
            FORMAT_VERSION
        } else {
            FORMAT_VERSION + 1
        };
        state_file(version, rest)
    };
    if mode & 4 == 0 {
        flash.files.insert(dir.join("state"), main);
    }
    let backup = start_states()[1].clone();
    if mode & 2 != 0 {
        let payload = postcard::to_allocvec(&backup).unwrap();
        flash
            .files
            .insert(dir.join("state.prev"), state_file(FORMAT_VERSION, &payload));
    }
    // A leftover temporary file is never a state.
    flash.files.insert(dir.join("state.tmp"), vec![0xff; 8]);

    let mut store = StateStore::new(flash, dir.clone(), "state");
    let state = match store.load::<DeviceState>() {
        Ok(Loaded::Fresh) => {
            assert!(mode & 4 != 0 && mode & 2 == 0);
            return;
        }
        Ok(Loaded::Main(state)) => {
            assert!(mode & 4 == 0);
            state
        }
        Ok(Loaded::Recovered { value, .. }) => {
            assert!(mode & 2 != 0);
            assert_eq!(value, backup);
            value
        }
        Err(StoreError::NoGoodCopy { .. }) => {
            assert!(mode & 2 == 0);
            return;
        }
        Err(e) => panic!("unexpected store error: {e}"),
    };
    assert!(!store.flash().files.contains_key(&dir.join("state.tmp")));

    // Whatever was stored is usable as it is...
    check_usable(&state);
    // ...and the agent adopts it with its configured identity.
    let mut state = state;
    if state.identity.serial != serial() {
        return;
    }
    state.identity = identity();
    for principal in [
        Principal::Cloud(pool(0).id),
        Principal::Cloud(pool(2).id),
        Principal::Local(LocalLevel::Guest),
    ] {
        for &action in Action::ALL {
            for channel in [None, Some(0), Some(1), Some(u16::MAX)] {
                let _ = decide(&state, &principal, action, channel, T0);
            }
        }
    }
    for (actor, body) in [
        (0, CommandBody::UnshareAll),
        (0, CommandBody::RequestAudit { max: u16::MAX }),
        (2, CommandBody::LeaveShare),
        (0, CommandBody::Unbind),
    ] {
        let command = Command {
            serial: serial(),
            actor: pool(actor),
            seq: state.ledger.last_seq.saturating_add(1),
            issued_at: T0,
            body,
        };
        let applied = apply(&state, &command, T0);
        check_usable(&applied.state);
        state = applied.state;
    }
});
