//! What the fuzz targets share: a fixture device (identity, pinned command
//! keys, accounts), raw envelope signing, an in-memory flash for the state
//! store, and the invariants of the device state.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hc_agent::core::{apply, DeviceState, Identity};
use hc_agent::store::Flash;
use hc_protocol::access::Action;
use hc_protocol::command::bind_proof;
use hc_protocol::envelope::{CommandKeys, CommandSigner};
use hc_protocol::messages::Binding;
use hc_protocol::{
    AccountId, AccountRef, BindRole, ChannelScope, Command, CommandBody, InstallerGrants, Outcome,
    Permissions, Region, Serial, Text,
};
use ring::signature::Ed25519KeyPair;

pub const SERIAL: &str = "NVR-FUZZ-0001";
pub const REGION: &str = "EU";
pub const CODE: &str = "ABCDEF";
pub const CHANNELS: u16 = 16;
pub const T0: u64 = 1_800_000_000;

/// The current and the next (rotation) command key, both pinned.
pub const KEY_ID: u8 = 1;
pub const NEXT_KEY_ID: u8 = 2;
pub const SEED: [u8; 32] = [0x11; 32];
pub const NEXT_SEED: [u8; 32] = [0x22; 32];

pub fn serial() -> Serial {
    Serial::new(SERIAL).unwrap()
}

pub fn identity() -> Identity {
    Identity {
        serial: serial(),
        region: Region::new(REGION).unwrap(),
        channel_count: CHANNELS,
        verification_code: Text::new(CODE).unwrap(),
    }
}

pub fn keys() -> &'static CommandKeys {
    static KEYS: OnceLock<CommandKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys = CommandKeys::new();
        assert!(keys.pin(KEY_ID, signer(KEY_ID).public_key()));
        assert!(keys.pin(NEXT_KEY_ID, signer(NEXT_KEY_ID).public_key()));
        keys
    })
}

pub fn seed_of(key_id: u8) -> &'static [u8; 32] {
    if key_id == NEXT_KEY_ID {
        &NEXT_SEED
    } else {
        &SEED
    }
}

pub fn signer(key_id: u8) -> CommandSigner {
    CommandSigner::from_seed(key_id, seed_of(key_id)).unwrap()
}

/// `version || key id || body || Ed25519(those bytes)`, for any body.
pub fn sign_raw(version: u8, key_id: u8, body: &[u8]) -> Vec<u8> {
    static PAIRS: OnceLock<[Ed25519KeyPair; 2]> = OnceLock::new();
    let pairs = PAIRS.get_or_init(|| {
        [
            Ed25519KeyPair::from_seed_unchecked(&SEED).unwrap(),
            Ed25519KeyPair::from_seed_unchecked(&NEXT_SEED).unwrap(),
        ]
    });
    let pair = &pairs[usize::from(key_id == NEXT_KEY_ID)];
    let mut out = Vec::with_capacity(body.len() + 66);
    out.push(version);
    out.push(key_id);
    out.extend_from_slice(body);
    let signature = pair.sign(&out);
    out.extend_from_slice(signature.as_ref());
    out
}

// ---------------------------------------------------------------------------
// Accounts

/// Accounts commands come from: the owner, the installer, two more home
/// accounts, one foreign account, and the owner's id from the wrong region.
pub const POOL: &[(&str, &str)] = &[
    ("alice", REGION),
    ("inst", REGION),
    ("bob", REGION),
    ("carol", REGION),
    ("zed", "US"),
    ("alice", "US"),
];

pub fn pool(index: u8) -> AccountRef {
    let (id, region) = POOL[usize::from(index) % POOL.len()];
    AccountRef {
        id: AccountId::new(id).unwrap(),
        region: Region::new(region).unwrap(),
    }
}

pub fn proof_for(account: &AccountId) -> [u8; 32] {
    bind_proof(CODE.as_bytes(), &serial(), account)
}

fn run(state: &DeviceState, seq: u64, actor: u8, body: CommandBody) -> DeviceState {
    let command = Command {
        serial: serial(),
        actor: pool(actor),
        seq,
        issued_at: T0,
        body,
    };
    let applied = apply(state, &command, T0);
    assert_eq!(applied.outcome, Outcome::Accepted, "fixture step {seq}");
    applied.state
}

/// Starting states: fresh (unbound), owned by alice with shares for bob
/// and carol, installer-managed by inst, handed over from inst to alice.
/// Their last sequence number is at most 4.
pub fn start_states() -> &'static [DeviceState; 4] {
    static STATES: OnceLock<[DeviceState; 4]> = OnceLock::new();
    STATES.get_or_init(|| {
        let fresh = DeviceState::new(identity()).unwrap();
        let bind = |role| CommandBody::Bind {
            role,
            proof: proof_for(&pool(if role == BindRole::Owner { 0 } else { 1 }).id),
        };
        let owned = run(&fresh, 1, 0, bind(BindRole::Owner));
        let owned = run(
            &owned,
            2,
            0,
            CommandBody::Share {
                account: pool(2),
                permissions: Permissions::SHAREABLE,
                channels: ChannelScope::All,
                validity: None,
            },
        );
        let owned = run(
            &owned,
            3,
            0,
            CommandBody::Share {
                account: pool(3),
                permissions: Permissions::of(&[Action::LiveView]),
                channels: ChannelScope::Only(
                    hc_protocol::ChannelSet::from_channels(&[1, 2]).unwrap(),
                ),
                validity: Some(hc_protocol::Validity {
                    not_before: T0,
                    not_after: T0 + 3_600,
                }),
            },
        );
        let managed = run(&fresh, 1, 1, bind(BindRole::Installer));
        let grant = Some(hc_protocol::Grant {
            validity: Some(hc_protocol::Validity {
                not_before: T0 - 10,
                not_after: T0 + 7_200,
            }),
        });
        let handed = run(
            &managed,
            2,
            0,
            CommandBody::Handover {
                installer_grants: InstallerGrants {
                    site_info: grant,
                    configuration: None,
                    live_view: Some(hc_protocol::Grant { validity: None }),
                    playback: grant,
                    may_disable_cloud: true,
                },
            },
        );
        [fresh, owned, managed, handed]
    })
}

// ---------------------------------------------------------------------------
// An in-memory flash

/// Files in memory. Reads and writes never fail.
#[derive(Debug, Default, Clone)]
pub struct MemFlash {
    pub files: HashMap<PathBuf, Vec<u8>>,
}

impl Flash for MemFlash {
    fn write_new(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.files.insert(path.to_owned(), bytes.to_vec());
        Ok(())
    }
    fn sync_file(&mut self, _: &Path) -> io::Result<()> {
        Ok(())
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let bytes = self
            .files
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        self.files.insert(to.to_owned(), bytes);
        Ok(())
    }
    fn sync_dir(&mut self, _: &Path) -> io::Result<()> {
        Ok(())
    }
    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        Ok(self.files.get(path).cloned())
    }
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.files.remove(path);
        Ok(())
    }
}

/// The state file layout (agent/src/store/file_format.rs): magic, format
/// version, payload length, payload, SHA-256 of everything before it.
pub fn state_file(version: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 42);
    out.extend_from_slice(b"HCST");
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    let sum = ring::digest::digest(&ring::digest::SHA256, &out);
    out.extend_from_slice(sum.as_ref());
    out
}

// ---------------------------------------------------------------------------
// Invariants

/// What must hold of every state the core produces from a valid start,
/// whatever commands it was given.
pub fn check_state(state: &DeviceState) {
    let access = &state.access;
    let identity = &state.identity;
    // Shares: sorted by account id without duplicates (decisions search
    // them), never the owner or installer, home region only, within what
    // an owner may share, on channels the device has, well-formed windows.
    for pair in access.shares.windows(2) {
        assert!(
            pair[0].account.id < pair[1].account.id,
            "shares not sorted: {:?}",
            access.shares
        );
    }
    for share in access.shares.iter() {
        assert!(!access.holds_device(&share.account.id), "{share:?}");
        assert_eq!(share.account.region, identity.region, "{share:?}");
        assert!(share.permissions.is_subset_of(Permissions::SHAREABLE));
        if let ChannelScope::Only(set) = share.channels {
            assert!(set.max().is_none_or(|c| c <= identity.channel_count));
        }
        assert!(share.validity.is_none_or(|v| v.is_well_formed()));
    }
    match &access.binding {
        Binding::Unbound => assert!(access.shares.is_empty()),
        Binding::InstallerManaged { installer } => {
            assert!(access.shares.is_empty());
            assert_eq!(installer.region, identity.region);
        }
        Binding::Owned {
            owner,
            installer,
            installer_grants,
        } => {
            assert_eq!(owner.region, identity.region);
            if let Some(installer) = installer {
                assert_ne!(installer.id, owner.id);
            } else {
                assert_eq!(*installer_grants, InstallerGrants::default());
            }
            assert!(installer_grants.windows().all(|w| w.is_well_formed()));
        }
    }
    // Ledger: bounded, newest last, nothing newer than last_seq.
    assert!(state.ledger.recent.len() <= hc_protocol::limits::RECENT_OUTCOMES);
    assert!(state
        .ledger
        .recent
        .iter()
        .all(|h| h.seq <= state.ledger.last_seq));
    if let Some(last) = state.ledger.recent.last() {
        assert_eq!(last.seq, state.ledger.last_seq);
    }
}

/// What must hold of any state at all, even one read from a damaged or
/// foreign state file: it can be reported, persisted and decided on.
pub fn check_usable(state: &DeviceState) {
    let report = state.report(hc_agent::VERSION, 0, keys());
    let bytes = hc_protocol::codec::encode(&report, hc_protocol::limits::MAX_MESSAGE_BYTES)
        .expect("the state report fits its message");
    let back: hc_protocol::messages::StateReport =
        hc_protocol::codec::decode(&bytes, hc_protocol::limits::MAX_MESSAGE_BYTES).unwrap();
    assert_eq!(back, report);
    let saved = postcard::to_allocvec(state).expect("the state encodes");
    assert!(saved.len() <= hc_agent::store::MAX_PAYLOAD);
    let loaded: DeviceState = postcard::from_bytes(&saved).expect("the state decodes");
    assert_eq!(&loaded, state);
}
