//! Keeps `SPEC.md` and the code in step.
//!
//! Every hex test vector in SPEC.md sits in a fenced block after a marker
//! line `<!-- vector: NAME -->` (negative vectors: `<!-- vector: NAME
//! refused=Reason -->`); every checked table follows a marker line
//! `<!-- table: NAME -->`. This test regenerates each vector from the code
//! and compares it byte for byte, decodes the quoted bytes back and compares
//! them with the value, and rebuilds every checked table (reasons, limits,
//! constants, actions, topics, worst-case sizes, and the field and variant
//! lists of every wire type) from the code.
//!
//! When the code changes on purpose, print everything SPEC.md quotes with
//!
//! ```text
//! cargo test -p hc-protocol --test spec_vectors -- --ignored --nocapture print_vectors
//! ```
//!
//! and update SPEC.md deliberately (the printed tables have empty meaning
//! columns: keep the prose already in SPEC.md).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Debug, Display};

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::Serialize;

use hc_protocol::access::{
    Action, ChannelScope, ChannelSet, Decision, Grant, InstallerGrants, LocalLevel, Permissions,
    Principal, ShareEntry, Validity,
};
use hc_protocol::certificate::{self, CertificateRequest};
use hc_protocol::codec;
use hc_protocol::command::{self, BindRole, Command, CommandBody, CommandKind};
use hc_protocol::ddns::{
    DomainOutcome, DomainRegistration, DomainResult, IpAddress, PortMapping, ServicePorts,
    Transport,
};
use hc_protocol::envelope::{self, CommandKeys, CommandSigner};
use hc_protocol::ids::{AccountId, AccountRef, DomainName, Region, Serial, Text};
use hc_protocol::limits::{self, MAX_LOCAL_FRAME_BYTES, MAX_MESSAGE_BYTES};
use hc_protocol::local::{
    self, LinkState, LocalReply, LocalRequest, RegistrationState, StatusReply,
};
use hc_protocol::messages::{
    self, Ack, AuditActor, AuditEntry, AuditEvent, AuditReport, Binding, DeviceStatus, Outcome,
    StateReport,
};
use hc_protocol::provisioning::{self, ProvisionAnswer, ProvisionRequest};
use hc_protocol::reason::Reason;
use hc_protocol::time::{self, TimeAnswer, TimeRequest};
use hc_protocol::topics::{self, Leaf};

const SPEC: &str = include_str!("../SPEC.md");
const LIMITS_SOURCE: &str = include_str!("../src/limits.rs");

// ---------------------------------------------------------------------------
// Fixed inputs (SPEC.md section "Test vectors" documents each of them).

/// RFC 8032 section 7.1, TEST 1 secret key: its public key is well known,
/// so an implementer can check the Ed25519 library before the envelope.
const TEST_SEED: [u8; 32] = [
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];
const TEST_KEY_ID: u8 = 1;
/// RFC 8032 section 7.1, TEST 2 secret key: the key the story rotates to,
/// under id 2.
const NEXT_SEED: [u8; 32] = [
    0x4c, 0xcd, 0x08, 0x9b, 0x28, 0xff, 0x96, 0xda, 0x9d, 0xb6, 0xc3, 0x46, 0xec, 0x11, 0x4e, 0x0f,
    0x5b, 0x8a, 0x31, 0x9f, 0x35, 0xab, 0xa6, 0x24, 0xda, 0x8c, 0xf6, 0xed, 0x4f, 0xb8, 0xa6, 0xfb,
];
const NEXT_KEY_ID: u8 = 2;
/// RFC 6979 appendix A.2.5 P-256 private key: the key the story's
/// certificate request asks a certificate for.
const P256_PRIVATE_KEY: [u8; 32] = [
    0xc9, 0xaf, 0xa9, 0xd8, 0x45, 0xba, 0x75, 0x16, 0x6b, 0x5c, 0x21, 0x57, 0x67, 0xb1, 0xd6, 0x93,
    0x4e, 0x50, 0xc3, 0xdb, 0x36, 0xe8, 0x9b, 0x12, 0x7b, 0x8a, 0x62, 0x2b, 0x12, 0x0f, 0x67, 0x21,
];
/// Its public key (RFC 6979 A.2.5 `Ux`, `Uy`), uncompressed.
const P256_PUBLIC_KEY: [u8; 65] = [
    0x04, 0x60, 0xfe, 0xd4, 0xba, 0x25, 0x5a, 0x9d, 0x31, 0xc9, 0x61, 0xeb, 0x74, 0xc6, 0x35, 0x6d,
    0x68, 0xc0, 0x49, 0xb8, 0x92, 0x3b, 0x61, 0xfa, 0x6c, 0xe6, 0x69, 0x62, 0x2e, 0x60, 0xf2, 0x9f,
    0xb6, 0x79, 0x03, 0xfe, 0x10, 0x08, 0xb8, 0xbc, 0x99, 0xa4, 0x1a, 0xe9, 0xe9, 0x56, 0x28, 0xbc,
    0x64, 0xf2, 0xf1, 0xb2, 0x0c, 0x2d, 0x7e, 0x9f, 0x51, 0x77, 0xa3, 0xc2, 0x94, 0xd4, 0x46, 0x22,
    0x99,
];
/// One signature by that key over the request's proof message, made once
/// and kept: ECDSA signatures are randomized, so another run (or another
/// implementation) makes a different one, which verifies just the same.
const P256_PROOF: [u8; 64] = [
    0xf0, 0x5e, 0xcc, 0xa4, 0xe9, 0x25, 0x12, 0x66, 0x5d, 0x4d, 0x10, 0xce, 0x79, 0xeb, 0xb3, 0xc9,
    0xa6, 0x68, 0x47, 0xe6, 0xa2, 0x33, 0x2e, 0x8f, 0x37, 0xdb, 0xbc, 0x71, 0xc5, 0xa9, 0x34, 0x2a,
    0x0d, 0x16, 0xc1, 0x85, 0xdf, 0x3a, 0xc9, 0x99, 0xaf, 0x99, 0x38, 0x39, 0xb1, 0xf3, 0x3a, 0x5a,
    0x0f, 0x96, 0xb6, 0x0c, 0x91, 0x49, 0xef, 0x44, 0x4f, 0x47, 0x64, 0x22, 0x9a, 0x4b, 0xfd, 0xcc,
];
/// One signature by the same key over the provisioning request's proof
/// message (SPEC.md §6.7), made once and kept, like `P256_PROOF`.
const PROVISION_PROOF: [u8; 64] = [
    0xfd, 0xad, 0x96, 0x25, 0xf7, 0x1c, 0xe2, 0x77, 0x96, 0xf9, 0x4f, 0xd9, 0x05, 0x62, 0x62, 0xa6,
    0x3a, 0xe9, 0xd4, 0xef, 0x00, 0x8b, 0xeb, 0x6a, 0x4a, 0xe2, 0x06, 0xef, 0xcf, 0x7c, 0x6f, 0xbe,
    0xc8, 0x38, 0xb6, 0x0f, 0xb6, 0x06, 0xb2, 0x81, 0x3e, 0xc3, 0xd4, 0xd3, 0x55, 0xc4, 0x4a, 0x36,
    0xee, 0xcf, 0x4c, 0xa0, 0x5f, 0x49, 0x5b, 0xf1, 0x60, 0x90, 0xb2, 0x57, 0x2b, 0x9f, 0x18, 0x25,
];
/// The claim name of the provisioning vectors: the claim certificate's CN.
const CLAIM: &str = "claim-B7";
/// The certificate the story's `InstallCertificate` carries: the first 16
/// bytes of a DER certificate (SEQUENCE of 500 bytes, tbsCertificate
/// SEQUENCE of 410 bytes, version v3, the tag and length of a 20-byte
/// serial number and its first byte), not a whole one. A device refuses it
/// `CertificateNotTrusted`; on the wire it is a certificate like any other.
const CERTIFICATE_PREFIX: [u8; 16] = [
    0x30, 0x82, 0x01, 0xf4, 0x30, 0x82, 0x01, 0x9a, 0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x14, 0x3a,
];
/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600;
const DAY: u64 = 86_400;
const VERIFICATION_CODE: &[u8] = b"ABCDEF";

fn serial() -> Serial {
    Serial::new("DS-7608-0001").unwrap()
}

fn region() -> Region {
    Region::new("EU").unwrap()
}

fn account(id: &str) -> AccountRef {
    AccountRef {
        id: AccountId::new(id).unwrap(),
        region: region(),
    }
}

fn installer() -> AccountRef {
    account("inst-4711")
}

fn owner() -> AccountRef {
    account("owner-0007")
}

fn alice() -> AccountRef {
    account("alice-0100")
}

fn bob() -> AccountRef {
    account("bob-0200")
}

fn domain() -> DomainName {
    DomainName::new("front-gate").unwrap()
}

fn signer() -> CommandSigner {
    CommandSigner::from_seed(TEST_KEY_ID, &TEST_SEED).unwrap()
}

fn keys() -> CommandKeys {
    let mut keys = CommandKeys::new();
    assert!(keys.pin(TEST_KEY_ID, signer().public_key()));
    keys
}

/// The key the story's `AddCommandKey` adds and its `RemoveCommandKey` is
/// signed with.
fn next_signer() -> CommandSigner {
    CommandSigner::from_seed(NEXT_KEY_ID, &NEXT_SEED).unwrap()
}

/// The ring during the story's rotation: the test key and the next one.
fn rotation_keys() -> CommandKeys {
    let mut keys = keys();
    assert!(keys.pin(NEXT_KEY_ID, next_signer().public_key()));
    keys
}

fn window(from_day: u64, days: u64) -> Validity {
    Validity {
        not_before: T0 + from_day * DAY,
        not_after: T0 + (from_day + days) * DAY,
    }
}

fn installer_grants() -> InstallerGrants {
    InstallerGrants {
        site_info: Some(Grant { validity: None }),
        configuration: Some(Grant {
            validity: Some(window(0, 30)),
        }),
        live_view: Some(Grant {
            validity: Some(window(0, 30)),
        }),
        playback: None,
        may_disable_cloud: true,
    }
}

fn alice_share() -> ShareEntry {
    ShareEntry {
        account: alice(),
        permissions: Permissions::of(&[Action::LiveView, Action::Playback, Action::Ptz]),
        channels: ChannelScope::Only(ChannelSet::from_channels(&[1, 2, 3]).unwrap()),
        validity: Some(window(0, 90)),
    }
}

fn bob_share() -> ShareEntry {
    ShareEntry {
        account: bob(),
        permissions: Permissions::of(&[Action::LiveView, Action::AlarmNotifications]),
        channels: ChannelScope::All,
        validity: None,
    }
}

fn command(seq: u64, actor: AccountRef, body: CommandBody) -> Command {
    Command {
        serial: serial(),
        actor,
        seq,
        issued_at: T0 + seq * 60,
        body,
    }
}

/// The commands sealed in the `envelope_*` vectors, one per `CommandBody`
/// variant, as one plausible story with growing sequence numbers.
fn story() -> Vec<Command> {
    vec![
        command(
            1,
            installer(),
            CommandBody::Bind {
                role: BindRole::Installer,
                proof: command::bind_proof(VERIFICATION_CODE, &serial(), &installer().id),
            },
        ),
        command(
            2,
            installer(),
            CommandBody::SetDomain {
                name: Text::new("front-gate").unwrap(),
            },
        ),
        command(
            3,
            owner(),
            CommandBody::Handover {
                installer_grants: installer_grants(),
            },
        ),
        command(
            4,
            owner(),
            CommandBody::Share {
                account: alice(),
                permissions: alice_share().permissions,
                channels: alice_share().channels,
                validity: alice_share().validity,
            },
        ),
        command(
            5,
            owner(),
            CommandBody::Unshare {
                accounts: heapless::Vec::from_slice(&[alice().id, bob().id]).unwrap(),
            },
        ),
        command(6, owner(), CommandBody::UnshareAll),
        command(7, alice(), CommandBody::LeaveShare),
        command(
            8,
            owner(),
            CommandBody::GrantInstaller {
                grants: InstallerGrants {
                    playback: Some(Grant {
                        validity: Some(window(30, 7)),
                    }),
                    ..installer_grants()
                },
            },
        ),
        command(9, owner(), CommandBody::RevokeInstaller),
        command(
            10,
            installer(),
            CommandBody::SetCloudService { enabled: false },
        ),
        command(11, owner(), CommandBody::RequestState),
        command(12, owner(), CommandBody::RequestAudit { max: 32 }),
        command(
            13,
            alice(),
            CommandBody::Operation {
                action: Action::LiveView,
                channel: Some(2),
            },
        ),
        command(14, owner(), CommandBody::Unbind),
        command(
            15,
            owner(),
            CommandBody::AuthorizeInstaller {
                installer: installer(),
                grants: installer_grants(),
            },
        ),
        command(16, owner(), CommandBody::ShareDomain { account: bob() }),
        command(
            17,
            owner(),
            CommandBody::RestoreState {
                binding: Binding::Owned {
                    owner: owner(),
                    installer: Some(installer()),
                    installer_grants: installer_grants(),
                },
                shares: heapless::Vec::from_slice(&[bob_share()]).unwrap(),
                cloud_service: true,
                domain: Text::new("front-gate").unwrap(),
            },
        ),
        // A key rotation (SPEC.md §6.2): key 2 added under key 1's
        // signature, then key 1 removed under key 2's.
        command(
            18,
            owner(),
            CommandBody::AddCommandKey {
                key_id: NEXT_KEY_ID,
                public_key: next_signer().public_key(),
            },
        ),
        command(
            19,
            owner(),
            CommandBody::RemoveCommandKey {
                key_id: TEST_KEY_ID,
            },
        ),
        // The cloud's answer to a certificate request (SPEC.md §6.6),
        // signed with key 2, the one key the device holds after command 19.
        command(
            20,
            owner(),
            CommandBody::InstallCertificate {
                certificate: heapless::Vec::from_slice(&CERTIFICATE_PREFIX).unwrap(),
            },
        ),
    ]
}

/// The device's request for a certificate for the RFC 6979 test key, while
/// its certificate in use ends ten years after T0.
fn certificate_request() -> CertificateRequest {
    CertificateRequest {
        serial: serial(),
        public_key: heapless::Vec::from_slice(&P256_PUBLIC_KEY).unwrap(),
        proof: heapless::Vec::from_slice(&P256_PROOF).unwrap(),
        current_not_after: T0 + 3650 * DAY,
    }
}

/// The device's request, with a claim certificate, for its first
/// certificate for the RFC 6979 test key, knowing the verification code.
fn provision_request() -> ProvisionRequest {
    ProvisionRequest {
        serial: serial(),
        public_key: heapless::Vec::from_slice(&P256_PUBLIC_KEY).unwrap(),
        proof: heapless::Vec::from_slice(&PROVISION_PROOF).unwrap(),
        code_proof: provisioning::code_proof(VERIFICATION_CODE, &serial(), &P256_PUBLIC_KEY),
    }
}

/// What the cloud checks a provisioning request with: the device's code.
fn check_provision_request(b: &[u8]) -> Result<(), Reason> {
    codec::decode::<ProvisionRequest>(b, MAX_MESSAGE_BYTES)
        .map_err(|e| e.reason())?
        .check(VERIFICATION_CODE)
}

fn state_report() -> StateReport {
    StateReport {
        serial: serial(),
        agent_version: Text::new("0.1.0").unwrap(),
        region: region(),
        channel_count: 8,
        binding: Binding::Owned {
            owner: owner(),
            installer: Some(installer()),
            installer_grants: installer_grants(),
        },
        shares: heapless::Vec::from_slice(&[alice_share(), bob_share()]).unwrap(),
        cloud_service: true,
        platform_access: true,
        domain: domain(),
        last_seq: 4,
        trusted_time_floor: T0 + 4 * 60,
        reports_dropped: 0,
        // The wall clock 10 minutes and 250 ms behind signed time.
        clock_offset_ms: Some(-600_250),
        sessions_contested: 0,
        sessions_lost: 1,
        behind: false,
        command_key_ids: heapless::Vec::from_slice(&[TEST_KEY_ID]).unwrap(),
        // A certificate issued for ten years from T0.
        certificate_not_after: Some(T0 + 3650 * DAY),
    }
}

/// The same device never bound, commanded or given signed time.
fn state_report_unbound() -> StateReport {
    StateReport {
        binding: Binding::Unbound,
        shares: heapless::Vec::new(),
        domain: DomainName::from_serial(&serial()).unwrap(),
        last_seq: 0,
        // Never commanded: the floor is the device's own clock reading
        // (SPEC.md §8.3), here T0.
        trusted_time_floor: T0,
        clock_offset_ms: None,
        sessions_lost: 0,
        ..state_report()
    }
}

fn audit_entries() -> Vec<AuditEntry> {
    vec![
        AuditEntry {
            at: T0 + 3600,
            actor: AuditActor::Cloud(alice().id),
            event: AuditEvent::Decision {
                action: Action::LiveView,
                channel: Some(2),
            },
            outcome: Outcome::Accepted,
        },
        AuditEntry {
            at: T0 + 3700,
            actor: AuditActor::Cloud(bob().id),
            event: AuditEvent::Decision {
                action: Action::Playback,
                channel: Some(1),
            },
            outcome: Outcome::Refused(Reason::ActionNotGranted),
        },
        AuditEntry {
            at: T0 + 3800,
            actor: AuditActor::Cloud(owner().id),
            event: AuditEvent::Command {
                kind: CommandKind::Share,
                seq: 4,
            },
            outcome: Outcome::Accepted,
        },
        AuditEntry {
            at: T0 + 3900,
            actor: AuditActor::Local(LocalLevel::Admin),
            event: AuditEvent::PlatformAccess { enabled: false },
            outcome: Outcome::Accepted,
        },
        AuditEntry {
            at: T0 + 4000,
            actor: AuditActor::Device,
            event: AuditEvent::PlatformAccess { enabled: true },
            outcome: Outcome::Accepted,
        },
    ]
}

fn domain_registration() -> DomainRegistration {
    DomainRegistration {
        attempt: 1,
        domain: domain(),
        lan_address: IpAddress::V4([192, 168, 1, 64]),
        ports: ServicePorts {
            http: 80,
            https: 443,
            rtsp: 554,
            sdk: 8000,
        },
        mappings: heapless::Vec::from_slice(&[
            PortMapping {
                transport: Transport::Tcp,
                internal: 443,
                external: 8443,
            },
            PortMapping {
                transport: Transport::Udp,
                internal: 554,
                external: 10554,
            },
        ])
        .unwrap(),
    }
}

fn status_reply() -> StatusReply {
    StatusReply {
        serial: serial(),
        link: LinkState::Connected,
        bound: true,
        handed_over: true,
        cloud_service: true,
        platform_access: true,
        domain: domain(),
        registration: RegistrationState::Registered {
            expires_at: T0 + DAY,
        },
        last_seq: 4,
        clock_trusted: true,
        reports_queued: 0,
        reports_dropped: 0,
        clock_offset_ms: Some(-600_250),
        command_key_ids: heapless::Vec::from_slice(&[TEST_KEY_ID]).unwrap(),
        certificate_not_after: Some(T0 + 3650 * DAY),
    }
}

// ---------------------------------------------------------------------------
// Vectors.

type Check = Box<dyn Fn(&[u8]) -> Result<(), String>>;

struct Vector {
    name: String,
    bytes: Vec<u8>,
    /// For negative vectors: the reason the receiver refuses them with.
    refused: Option<Reason>,
    /// Decodes bytes (as quoted in SPEC.md) and compares them with the value
    /// they were made from, or checks they are refused for `refused`.
    check: Check,
}

fn same<T: PartialEq + Debug>(decoded: &T, expected: &T) -> Result<(), String> {
    if decoded == expected {
        Ok(())
    } else {
        Err(format!("decodes to\n{decoded:#?}\nnot to\n{expected:#?}"))
    }
}

/// A message published on a topic (acks, reports, registrations).
fn message<T>(name: &'static str, value: T) -> Vector
where
    T: Serialize + DeserializeOwned + PartialEq + Debug + 'static,
{
    let bytes = codec::encode(&value, MAX_MESSAGE_BYTES).expect(name);
    Vector {
        name: name.to_string(),
        bytes,
        refused: None,
        check: Box::new(move |b| {
            let decoded: T =
                codec::decode(b, MAX_MESSAGE_BYTES).map_err(|e| format!("does not decode: {e}"))?;
            same(&decoded, &value)
        }),
    }
}

/// A local-socket frame: length prefix and body.
fn frame<T>(name: &'static str, value: T) -> Vector
where
    T: Serialize + DeserializeOwned + PartialEq + Debug + 'static,
{
    let bytes = local::encode_frame(&value).expect(name);
    Vector {
        name: name.to_string(),
        bytes,
        refused: None,
        check: Box::new(move |b| {
            let header: [u8; local::FRAME_HEADER_LEN] = b
                .get(..local::FRAME_HEADER_LEN)
                .and_then(|h| h.try_into().ok())
                .ok_or("shorter than the frame header")?;
            let len = local::frame_body_len(header).map_err(|e| e.to_string())?;
            let body = &b[local::FRAME_HEADER_LEN..];
            if len != body.len() {
                return Err(format!("header says {len} bytes, {} follow", body.len()));
            }
            let decoded: T =
                local::decode_frame_body(body).map_err(|e| format!("does not decode: {e}"))?;
            same(&decoded, &value)
        }),
    }
}

/// A story command sealed as the cloud sends it: with the test key, but a
/// key removal with the next key (a key cannot remove itself), and the
/// certificate that follows it with the next key too (the only one left).
fn envelope_vector(command: Command) -> Vector {
    let name = envelope_name(command.body.kind());
    let sealer = match command.body {
        CommandBody::RemoveCommandKey { .. } | CommandBody::InstallCertificate { .. } => {
            next_signer()
        }
        _ => signer(),
    };
    let bytes = sealer.seal(&command).expect(&name);
    Vector {
        name,
        bytes,
        refused: None,
        check: Box::new(move |b| {
            let opened = envelope::open(b, &rotation_keys(), &serial())
                .map_err(|e| format!("does not open: {e}"))?;
            same(&opened, &command)
        }),
    }
}

fn refused(
    name: &'static str,
    bytes: Vec<u8>,
    reason: Reason,
    attempt: fn(&[u8]) -> Result<(), Reason>,
) -> Vector {
    Vector {
        name: name.to_string(),
        bytes,
        refused: Some(reason),
        check: Box::new(move |b| match attempt(b) {
            Err(got) if got == reason => Ok(()),
            Err(got) => Err(format!("refused with {got:?}, not {reason:?}")),
            Ok(()) => Err(format!("accepted, but must be refused with {reason:?}")),
        }),
    }
}

/// The time request of the vectors: nonce 00 01 .. 0f.
fn time_request() -> TimeRequest {
    TimeRequest {
        nonce: core::array::from_fn(|i| i as u8),
    }
}

/// The cloud's answer to `time_request()` at T0 + 4 min + 123 ms.
fn time_answer() -> TimeAnswer {
    TimeAnswer::to(serial(), &time_request(), (T0 + 4 * 60) * 1000 + 123, 50)
}

fn time_answer_vector() -> Vector {
    let answer = time_answer();
    Vector {
        name: "time_answer".to_string(),
        bytes: signer().seal_time(&answer).expect("a time answer fits"),
        refused: None,
        check: Box::new(move |b| {
            let opened = time::open_time_answer(b, &keys(), &serial())
                .map_err(|e| format!("does not open: {e}"))?;
            same(&opened, &answer)
        }),
    }
}

/// A command and a time answer signed for another device: whoever opens
/// them must refuse them `WrongDevice`.
fn for_another_device() -> [Vector; 2] {
    let other = Serial::new("DS-7608-0002").unwrap();
    let command = Command {
        serial: other.clone(),
        ..story()[10].clone()
    };
    let answer = TimeAnswer {
        serial: other,
        ..time_answer()
    };
    [
        refused(
            "reject_envelope_wrong_device",
            signer().seal(&command).unwrap(),
            Reason::WrongDevice,
            open_envelope,
        ),
        refused(
            "reject_time_answer_wrong_device",
            signer().seal_time(&answer).unwrap(),
            Reason::WrongDevice,
            open_time_answer,
        ),
    ]
}

fn open_time_answer(b: &[u8]) -> Result<(), Reason> {
    time::open_time_answer(b, &keys(), &serial())
        .map(drop)
        .map_err(|e| e.reason())
}

fn open_envelope(b: &[u8]) -> Result<(), Reason> {
    envelope::open(b, &keys(), &serial())
        .map(drop)
        .map_err(|e| e.reason())
}

/// The vector name of a command kind: `envelope_` + the snake_case kind.
fn envelope_name(kind: CommandKind) -> String {
    let mut name = String::from("envelope_");
    for (i, c) in format!("{kind:?}").chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                name.push('_');
            }
            name.push(c.to_ascii_lowercase());
        } else {
            name.push(c);
        }
    }
    name
}

fn vectors() -> Vec<Vector> {
    let mut v = Vec::new();

    // Inputs and derived keys.
    v.push(Vector {
        name: "test_seed".to_string(),
        bytes: TEST_SEED.to_vec(),
        refused: None,
        check: Box::new(|b| same(&b, &&TEST_SEED[..])),
    });
    v.push(Vector {
        name: "test_public_key".to_string(),
        bytes: signer().public_key().to_vec(),
        refused: None,
        check: Box::new(|b| same(&b, &&signer().public_key()[..])),
    });

    // The bind proof: the HMAC input, then the MAC.
    let mut proof_message = command::BIND_PROOF_CONTEXT.to_vec();
    proof_message.push(0);
    proof_message.extend_from_slice(serial().as_bytes());
    proof_message.push(0);
    proof_message.extend_from_slice(installer().id.as_bytes());
    v.push(Vector {
        name: "bind_proof_message".to_string(),
        bytes: proof_message,
        refused: None,
        check: Box::new(|b| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, VERIFICATION_CODE);
            let tag = ring::hmac::sign(&key, b);
            let proof = command::bind_proof(VERIFICATION_CODE, &serial(), &installer().id);
            same(&tag.as_ref(), &&proof[..])
        }),
    });
    v.push(Vector {
        name: "bind_proof".to_string(),
        bytes: command::bind_proof(VERIFICATION_CODE, &serial(), &installer().id).to_vec(),
        refused: None,
        check: Box::new(|b| {
            let proof: [u8; 32] = b.try_into().map_err(|_| "not 32 bytes")?;
            if command::verify_bind_proof(VERIFICATION_CODE, &serial(), &installer().id, &proof) {
                Ok(())
            } else {
                Err("does not verify".into())
            }
        }),
    });

    // One sealed envelope per command variant.
    for command in story() {
        v.push(envelope_vector(command));
    }

    // Device -> cloud messages.
    v.push(message(
        "ack_accepted",
        Ack {
            seq: Some(4),
            outcome: Outcome::Accepted,
            redelivered: false,
        },
    ));
    v.push(message(
        "ack_refused_redelivered",
        Ack {
            seq: Some(13),
            outcome: Outcome::Refused(Reason::ChannelOutOfScope),
            redelivered: true,
        },
    ));
    v.push(message(
        "ack_unverified",
        Ack {
            seq: None,
            outcome: Outcome::Refused(Reason::BadSignature),
            redelivered: false,
        },
    ));
    v.push(message("state_report", state_report()));
    v.push(message("state_report_unbound", state_report_unbound()));
    // Written at T0+3600, refreshed every 300 s; the will of a connect at T0.
    v.push(message(
        "status_online",
        DeviceStatus::online(T0 + 3600, 300),
    ));
    v.push(message("status_offline", DeviceStatus::offline(T0)));
    v.push(message(
        "audit_report",
        AuditReport {
            serial: serial(),
            entries: heapless::Vec::from_slice(&audit_entries()).unwrap(),
        },
    ));
    v.push(message("domain_registration", domain_registration()));
    v.push(message(
        "domain_result_registered",
        DomainResult {
            attempt: 1,
            outcome: DomainOutcome::Registered {
                public_address: IpAddress::V4([203, 0, 113, 7]),
                expires_in: 86_400,
            },
        },
    ));
    v.push(message(
        "domain_result_registered_v6",
        DomainResult {
            attempt: 2,
            outcome: DomainOutcome::Registered {
                public_address: IpAddress::V6([
                    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07,
                ]),
                expires_in: 86_400,
            },
        },
    ));
    v.push(message(
        "domain_result_name_taken",
        DomainResult {
            attempt: 3,
            outcome: DomainOutcome::NameTaken,
        },
    ));

    // Certificate renewal (section 6.6): what the proof signs, then the
    // request; its proof verifies with its key.
    v.push(Vector {
        name: "certificate_request_proof_message".to_string(),
        bytes: certificate::request_proof_message(&serial(), &P256_PUBLIC_KEY),
        refused: None,
        check: Box::new(|b| {
            same(
                &b,
                &&certificate::request_proof_message(&serial(), &P256_PUBLIC_KEY)[..],
            )?;
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_FIXED,
                &P256_PUBLIC_KEY[..],
            )
            .verify(b, &P256_PROOF)
            .map_err(|_| "the proof does not verify over it".to_string())
        }),
    });
    let request = message("certificate_request", certificate_request());
    let decodes = request.check;
    v.push(Vector {
        check: Box::new(move |b| {
            decodes(b)?;
            if certificate_request().proof_holds() {
                Ok(())
            } else {
                Err("its proof does not hold".into())
            }
        }),
        ..request
    });

    // Provisioning by claim certificate (section 6.7): the two messages the
    // proofs cover, the code proof, the request (both proofs hold with the
    // code), and the cloud's two kinds of answer.
    v.push(Vector {
        name: "provision_proof_message".to_string(),
        bytes: provisioning::proof_message(
            provisioning::PROOF_CONTEXT,
            &serial(),
            &P256_PUBLIC_KEY,
        ),
        refused: None,
        check: Box::new(|b| {
            same(
                &b,
                &&provisioning::proof_message(
                    provisioning::PROOF_CONTEXT,
                    &serial(),
                    &P256_PUBLIC_KEY,
                )[..],
            )?;
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_FIXED,
                &P256_PUBLIC_KEY[..],
            )
            .verify(b, &PROVISION_PROOF)
            .map_err(|_| "the proof does not verify over it".to_string())
        }),
    });
    v.push(Vector {
        name: "provision_code_proof_message".to_string(),
        bytes: provisioning::proof_message(
            provisioning::CODE_PROOF_CONTEXT,
            &serial(),
            &P256_PUBLIC_KEY,
        ),
        refused: None,
        check: Box::new(|b| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, VERIFICATION_CODE);
            let tag = ring::hmac::sign(&key, b);
            let proof = provisioning::code_proof(VERIFICATION_CODE, &serial(), &P256_PUBLIC_KEY);
            same(&tag.as_ref(), &&proof[..])
        }),
    });
    v.push(Vector {
        name: "provision_code_proof".to_string(),
        bytes: provisioning::code_proof(VERIFICATION_CODE, &serial(), &P256_PUBLIC_KEY).to_vec(),
        refused: None,
        check: Box::new(|b| {
            let request = ProvisionRequest {
                code_proof: b.try_into().map_err(|_| "not 32 bytes")?,
                ..provision_request()
            };
            request
                .check(VERIFICATION_CODE)
                .map_err(|r| format!("refused with {r:?}"))
        }),
    });
    let request = message("provision_request", provision_request());
    let decodes = request.check;
    v.push(Vector {
        check: Box::new(move |b| {
            decodes(b)?;
            check_provision_request(b).map_err(|r| format!("refused with {r:?}"))
        }),
        ..request
    });
    v.push(message(
        "provision_answer_issued",
        ProvisionAnswer::Issued {
            certificate: heapless::Vec::from_slice(&CERTIFICATE_PREFIX).unwrap(),
        },
    ));
    v.push(message(
        "provision_answer_refused",
        ProvisionAnswer::Refused(Reason::BadVerificationProof),
    ));

    // Local socket frames.
    v.push(frame(
        "local_authorize_cloud",
        LocalRequest::Authorize {
            principal: Principal::Cloud(alice().id),
            action: Action::LiveView,
            channel: Some(2),
        },
    ));
    v.push(frame(
        "local_authorize_local",
        LocalRequest::Authorize {
            principal: Principal::Local(LocalLevel::Operator),
            action: Action::ConfigWrite,
            channel: None,
        },
    ));
    v.push(frame(
        "local_reply_allow",
        LocalReply::Decision(Decision::Allow),
    ));
    v.push(frame(
        "local_reply_deny",
        LocalReply::Decision(Decision::Deny(Reason::ChannelOutOfScope)),
    ));
    v.push(frame("local_status", LocalRequest::Status));
    v.push(frame(
        "local_reply_status",
        LocalReply::Status(Box::new(status_reply())),
    ));
    v.push(frame("local_list_access", LocalRequest::ListAccess));
    v.push(frame(
        "local_set_platform_access",
        LocalRequest::SetPlatformAccess {
            by: LocalLevel::Admin,
            enabled: false,
        },
    ));
    v.push(frame("local_reply_done", LocalReply::Done));
    v.push(frame(
        "local_recent_audit",
        LocalRequest::RecentAudit { max: 1 },
    ));
    v.push(frame(
        "local_reply_audit",
        LocalReply::Audit(heapless::Vec::from_slice(&audit_entries()[..1]).unwrap()),
    ));
    v.push(frame(
        "local_reply_error",
        LocalReply::Error(Reason::PeerNotAllowed),
    ));
    v.push(frame(
        "local_watch",
        LocalRequest::Watch {
            session: 7,
            principal: Principal::Cloud(alice().id),
            action: Action::LiveView,
            channel: Some(2),
        },
    ));
    v.push(frame("local_unwatch", LocalRequest::Unwatch { session: 7 }));
    v.push(frame(
        "local_unbind",
        LocalRequest::Unbind {
            by: LocalLevel::Admin,
        },
    ));
    v.push(frame(
        "local_notice_revoked",
        LocalReply::Revoked {
            session: 7,
            reason: Reason::Expired,
        },
    ));

    // Negative vectors: what a receiver must refuse, and with which reason.
    let share = signer().seal(&story()[3]).unwrap();
    let mut tampered = share.clone();
    let last_body_byte = tampered.len() - envelope::SIGNATURE_LEN - 1;
    tampered[last_body_byte] ^= 0x01;
    v.push(refused(
        "reject_envelope_tampered",
        tampered,
        Reason::BadSignature,
        open_envelope,
    ));
    let mut other_version = share.clone();
    other_version[0] = 2;
    v.push(refused(
        "reject_envelope_version",
        other_version,
        Reason::UnsupportedVersion,
        open_envelope,
    ));
    let other_key = CommandSigner::from_seed(2, &TEST_SEED).unwrap();
    v.push(refused(
        "reject_envelope_unknown_key",
        other_key.seal(&story()[10]).unwrap(),
        Reason::UnknownKeyId,
        open_envelope,
    ));
    let [command_for_other, time_answer_for_other] = for_another_device();
    v.push(command_for_other);
    // A correctly signed envelope whose command is followed by one more byte.
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&TEST_SEED).unwrap();
    let mut trailing = vec![envelope::ENVELOPE_VERSION, TEST_KEY_ID];
    trailing.extend_from_slice(&codec::encode(&story()[10], MAX_MESSAGE_BYTES).unwrap());
    trailing.push(0x00);
    let signature = pair.sign(&trailing);
    trailing.extend_from_slice(signature.as_ref());
    v.push(refused(
        "reject_envelope_trailing_byte",
        trailing,
        Reason::Malformed,
        open_envelope,
    ));
    let mut bad_bool = codec::encode(
        &Ack {
            seq: Some(4),
            outcome: Outcome::Accepted,
            redelivered: false,
        },
        MAX_MESSAGE_BYTES,
    )
    .unwrap();
    *bad_bool.last_mut().unwrap() = 0x02;
    v.push(refused(
        "reject_ack_bad_bool",
        bad_bool,
        Reason::Malformed,
        |b| {
            codec::decode::<Ack>(b, MAX_MESSAGE_BYTES)
                .map(drop)
                .map_err(|e| e.reason())
        },
    ));
    // Provisioning requests the cloud must refuse: one whose code proof
    // was made with another code, one moved to another serial.
    let wrong_code = ProvisionRequest {
        code_proof: provisioning::code_proof(b"ABCDEG", &serial(), &P256_PUBLIC_KEY),
        ..provision_request()
    };
    v.push(refused(
        "reject_provision_request_wrong_code",
        codec::encode(&wrong_code, MAX_MESSAGE_BYTES).unwrap(),
        Reason::BadVerificationProof,
        check_provision_request,
    ));
    let other_serial = ProvisionRequest {
        serial: Serial::new("DS-7608-0002").unwrap(),
        ..provision_request()
    };
    v.push(refused(
        "reject_provision_request_other_serial",
        codec::encode(&other_serial, MAX_MESSAGE_BYTES).unwrap(),
        Reason::BadSignature,
        check_provision_request,
    ));
    // Signed time (section 8.4).
    v.push(message("time_request", time_request()));
    v.push(time_answer_vector());
    v.push(time_answer_for_other);
    v.push(refused(
        "reject_time_answer_unknown_key",
        other_key.seal_time(&time_answer()).unwrap(),
        Reason::UnknownKeyId,
        open_time_answer,
    ));
    v.push(refused(
        "reject_time_answer_as_command",
        signer().seal_time(&time_answer()).unwrap(),
        Reason::UnsupportedVersion,
        open_envelope,
    ));
    v.push(refused(
        "reject_command_as_time_answer",
        signer().seal(&story()[10]).unwrap(),
        Reason::UnsupportedVersion,
        open_time_answer,
    ));
    v.push(refused(
        "reject_frame_too_large",
        ((MAX_LOCAL_FRAME_BYTES + 1) as u32).to_be_bytes().to_vec(),
        Reason::TooLarge,
        |b| {
            let header: [u8; local::FRAME_HEADER_LEN] =
                b.try_into().map_err(|_| Reason::Malformed)?;
            local::frame_body_len(header)
                .map(drop)
                .map_err(|e| e.reason())
        },
    ));

    v
}

// ---------------------------------------------------------------------------
// Reading SPEC.md.

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex as SPEC.md quotes it: 16 bytes a line, bytes separated by spaces.
fn hex_block(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|line| {
            line.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn from_hex(name: &str, text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|line| line.bytes())
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| {
            (b as char)
                .to_digit(16)
                .unwrap_or_else(|| panic!("vector {name}: {:?} is not a hex digit", b as char))
                as u8
        })
        .collect();
    assert!(
        digits.len().is_multiple_of(2),
        "vector {name}: odd number of hex digits"
    );
    digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
}

struct SpecVector {
    bytes: Vec<u8>,
    refused: Option<String>,
}

/// Every `<!-- vector: NAME [refused=Reason] -->` marker and the hex in the
/// fenced block that follows it. Annotated blocks may carry `# comments`.
fn spec_vectors() -> BTreeMap<String, SpecVector> {
    let mut out = BTreeMap::new();
    let mut lines = SPEC.lines().enumerate();
    while let Some((no, line)) = lines.next() {
        let Some(rest) = line.trim().strip_prefix("<!-- vector:") else {
            continue;
        };
        let rest = rest
            .strip_suffix("-->")
            .unwrap_or_else(|| panic!("SPEC.md:{}: unterminated vector marker", no + 1));
        let mut words = rest.split_whitespace();
        let name = words
            .next()
            .unwrap_or_else(|| panic!("SPEC.md:{}: vector marker without a name", no + 1))
            .to_string();
        let mut refused = None;
        for word in words {
            match word.strip_prefix("refused=") {
                Some(reason) => refused = Some(reason.to_string()),
                None => panic!("SPEC.md:{}: unknown marker attribute {word:?}", no + 1),
            }
        }
        let fence = lines
            .by_ref()
            .map(|(_, l)| l.trim())
            .find(|l| !l.is_empty())
            .unwrap_or_default();
        assert_eq!(
            fence,
            "```hex",
            "SPEC.md:{}: vector {name} must be followed by a ```hex block",
            no + 1
        );
        let mut hex = String::new();
        for (_, l) in lines.by_ref() {
            if l.trim() == "```" {
                break;
            }
            hex.push_str(l);
            hex.push('\n');
        }
        let bytes = from_hex(&name, &hex);
        let previous = out.insert(name.clone(), SpecVector { bytes, refused });
        assert!(previous.is_none(), "vector {name} appears twice in SPEC.md");
    }
    out
}

/// The checked cell of a table: the first code span if there is one,
/// otherwise the trimmed cell.
fn cell(raw: &str) -> String {
    let raw = raw.trim();
    let mut spans = raw.split('`');
    match (spans.next(), spans.next(), spans.next()) {
        (Some(_), Some(code), Some(_)) => code.trim().to_string(),
        _ => raw.to_string(),
    }
}

/// Every `<!-- table: NAME -->` marker and the rows (header and separator
/// dropped) of the markdown table that follows it.
fn spec_tables() -> BTreeMap<String, Vec<Vec<String>>> {
    let mut out = BTreeMap::new();
    let mut lines = SPEC.lines().enumerate().peekable();
    while let Some((no, line)) = lines.next() {
        let Some(rest) = line.trim().strip_prefix("<!-- table:") else {
            continue;
        };
        let name = rest
            .strip_suffix("-->")
            .unwrap_or_else(|| panic!("SPEC.md:{}: unterminated table marker", no + 1))
            .trim()
            .to_string();
        while lines.peek().is_some_and(|(_, l)| l.trim().is_empty()) {
            lines.next();
        }
        let mut rows = Vec::new();
        while let Some((_, l)) = lines.peek() {
            let l = l.trim();
            if !l.starts_with('|') {
                break;
            }
            let inner = l.trim_start_matches('|').trim_end_matches('|');
            // `|` never appears inside a checked cell; escaped pipes in prose
            // cells are kept out of the split.
            let cells: Vec<String> = split_cells(inner).iter().map(|c| cell(c)).collect();
            rows.push(cells);
            lines.next();
        }
        assert!(rows.len() >= 2, "table {name} has no header and separator");
        rows.drain(..2);
        let previous = out.insert(name.clone(), rows);
        assert!(previous.is_none(), "table {name} appears twice in SPEC.md");
    }
    out
}

fn split_cells(row: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut in_code = false;
    let mut escaped = false;
    for c in row.chars() {
        match c {
            '\\' if !escaped => {
                escaped = true;
                continue;
            }
            '`' => in_code = !in_code,
            '|' if !in_code && !escaped => {
                cells.push(String::new());
                continue;
            }
            _ => {}
        }
        escaped = false;
        cells.last_mut().unwrap().push(c);
    }
    cells
}

/// Compares the first `expected[i].len()` cells of each row of a table.
fn check_table(tables: &BTreeMap<String, Vec<Vec<String>>>, name: &str, expected: &[Vec<String>]) {
    let rows = tables
        .get(name)
        .unwrap_or_else(|| panic!("SPEC.md has no table {name:?}\n{}", render(name, expected)));
    let got: Vec<Vec<String>> = rows
        .iter()
        .zip(expected)
        .map(|(row, want)| row.iter().take(want.len()).cloned().collect())
        .collect();
    if rows.len() != expected.len() || got != expected {
        let first = (0..rows.len().max(expected.len()))
            .find(|&i| got.get(i) != expected.get(i))
            .map(|i| {
                format!(
                    "row {}: SPEC.md has {:?}, the code says {:?}",
                    i + 1,
                    got.get(i),
                    expected.get(i)
                )
            })
            .unwrap_or_else(|| format!("{} rows, the code has {}", rows.len(), expected.len()));
        panic!(
            "table {name:?} in SPEC.md does not match the code ({first}); the code says:\n{}",
            render(name, expected)
        );
    }
}

fn render(name: &str, rows: &[Vec<String>]) -> String {
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .map(|c| {
                    if c.is_empty() || c == "—" || c.chars().all(|ch| ch.is_ascii_digit()) {
                        c.clone()
                    } else {
                        format!("`{c}`")
                    }
                })
                .collect();
            format!("| {} | |", cells.join(" | "))
        })
        .fold(format!("<!-- table: {name} -->\n"), |acc, l| {
            acc + &l + "\n"
        })
}

// ---------------------------------------------------------------------------
// The tables the code defines.

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn reason_rows() -> Vec<Vec<String>> {
    Reason::ALL
        .iter()
        .map(|r| {
            vec![
                r.code().to_string(),
                r.name().to_string(),
                r.text().to_string(),
            ]
        })
        .collect()
}

/// Each limit's name and value, the name written once.
macro_rules! named_limits {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), limits::$name as usize)),*]
    };
}

const LIMITS: &[(&str, usize)] = named_limits![
    MAX_COMMAND_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_LOCAL_FRAME_BYTES,
    MAX_MQTT_PACKET_BYTES,
    MAX_STATE_FILE_BYTES,
    MAX_SHARES,
    MAX_CHANNELS,
    MAX_COMMAND_KEYS,
    MAX_CERTIFICATE_BYTES,
    RECENT_OUTCOMES,
    MAX_QUEUED_REPORTS,
    MAX_AUDIT_ENTRIES,
    MAX_AUDIT_REPLY,
    MAX_PORT_MAPPINGS,
    MAX_LOCAL_PEERS,
    MAX_LOCAL_CLIENTS,
    MAX_LOCAL_CLIENTS_PER_UID,
    MAX_SERIAL_LEN,
    MAX_ACCOUNT_ID_LEN,
    MAX_REGION_LEN,
    MAX_DOMAIN_LEN,
    MAX_VERIFICATION_CODE_LEN,
    MAX_VERSION_LEN,
    MAX_UNACKED_INBOUND,
    MAX_WATCHED_SESSIONS,
    MAX_WATCHES_PER_CONNECTION,
    MAX_TIME_ROUND_TRIP_MS,
];

fn limit_rows() -> Vec<Vec<String>> {
    LIMITS
        .iter()
        .map(|(name, value)| vec![name.to_string(), value.to_string()])
        .collect()
}

fn constant_rows() -> Vec<Vec<String>> {
    [
        ("ENVELOPE_VERSION", envelope::ENVELOPE_VERSION.to_string()),
        ("HEADER_LEN", envelope::HEADER_LEN.to_string()),
        ("SIGNATURE_LEN", envelope::SIGNATURE_LEN.to_string()),
        ("PUBLIC_KEY_LEN", envelope::PUBLIC_KEY_LEN.to_string()),
        ("FRAME_HEADER_LEN", local::FRAME_HEADER_LEN.to_string()),
        (
            "BIND_PROOF_CONTEXT",
            String::from_utf8(command::BIND_PROOF_CONTEXT.to_vec()).unwrap(),
        ),
        (
            "REQUEST_PROOF_CONTEXT",
            String::from_utf8(certificate::REQUEST_PROOF_CONTEXT.to_vec()).unwrap(),
        ),
        (
            "P256_PUBLIC_KEY_LEN",
            certificate::P256_PUBLIC_KEY_LEN.to_string(),
        ),
        (
            "P256_SIGNATURE_LEN",
            certificate::P256_SIGNATURE_LEN.to_string(),
        ),
        ("ROOT", topics::ROOT.to_string()),
        ("CLAIM_PREFIX", provisioning::CLAIM_PREFIX.to_string()),
        (
            "PROOF_CONTEXT",
            String::from_utf8(provisioning::PROOF_CONTEXT.to_vec()).unwrap(),
        ),
        (
            "CODE_PROOF_CONTEXT",
            String::from_utf8(provisioning::CODE_PROOF_CONTEXT.to_vec()).unwrap(),
        ),
        (
            "SHAREABLE",
            format!("0x{:04x}", Permissions::SHAREABLE.bits()),
        ),
        (
            "MAX_AUDIT_REQUEST",
            CommandKind::MAX_AUDIT_REQUEST.to_string(),
        ),
        (
            "TIME_ANSWER_FORMAT",
            format!("0x{:02x}", time::TIME_ANSWER_FORMAT),
        ),
        ("NONCE_LEN", time::NONCE_LEN.to_string()),
        ("TIME_REFRESH_SECS", time::TIME_REFRESH_SECS.to_string()),
        ("TIME_RETRY_SECS", time::TIME_RETRY_SECS.to_string()),
        (
            "STATUS_MARGIN_SECS",
            messages::STATUS_MARGIN_SECS.to_string(),
        ),
    ]
    .into_iter()
    .map(|(n, v)| vec![n.to_string(), v])
    .collect()
}

/// The installer grant field that covers an action after handover, found by
/// asking `grant_for` with one field set at a time.
fn installer_grant_field(action: Action) -> String {
    let g = Some(Grant { validity: None });
    // Each field, and how to set it alone.
    type Setter = fn(&mut InstallerGrants, Option<Grant>);
    let setters: [(&str, Setter); 5] = [
        ("site_info", |x, g| x.site_info = g),
        ("configuration", |x, g| x.configuration = g),
        ("live_view", |x, g| x.live_view = g),
        ("playback", |x, g| x.playback = g),
        ("may_disable_cloud", |x, _| x.may_disable_cloud = true),
    ];
    let fields = setters.map(|(name, set)| {
        let mut grants = InstallerGrants::default();
        set(&mut grants, g);
        (name, grants.grant_for(action).is_some())
    });
    let covering: Vec<&str> = fields
        .iter()
        .filter(|(_, covers)| *covers)
        .map(|(f, _)| *f)
        .collect();
    if covering.is_empty() {
        "—".to_string()
    } else {
        covering.join(", ")
    }
}

fn action_rows() -> Vec<Vec<String>> {
    Action::ALL
        .iter()
        .map(|&a| {
            vec![
                (a as u8).to_string(),
                a.name().to_string(),
                format!("0x{:04x}", a.bit()),
                yes(a.is_channel_scoped()),
                yes(Permissions::SHAREABLE.contains(a)),
                yes(LocalLevel::Admin.permissions().contains(a)),
                yes(LocalLevel::Operator.permissions().contains(a)),
                yes(LocalLevel::Guest.permissions().contains(a)),
                installer_grant_field(a),
            ]
        })
        .collect()
}

/// The length bounds and characters an identifier accepts, probed through
/// its constructor (which decoding uses too).
fn identifier_row(name: &str, accepts: fn(&str) -> bool) -> Vec<String> {
    let min = if accepts("") { 0 } else { 1 };
    let max = (1..=1024)
        .take_while(|&n| accepts(&"a".repeat(n)))
        .last()
        .unwrap_or(0);
    // Each character is tried between two letters, away from edge rules.
    let allowed: Vec<char> = (0x20u8..0x7f)
        .map(char::from)
        .filter(|&c| accepts(&format!("a{c}a")))
        .collect();
    let visible: Vec<char> = (0x21u8..0x7f).map(char::from).collect();
    let mut class = if allowed.len() == 0x7f - 0x20 {
        "printable ASCII 0x20-0x7E".to_string()
    } else if allowed == visible {
        "visible ASCII 0x21-0x7E".to_string()
    } else {
        let mut runs: Vec<(char, char)> = Vec::new();
        for &c in &allowed {
            match runs.last_mut() {
                Some((_, end)) if *end as u32 + 1 == c as u32 => *end = c,
                _ => runs.push((c, c)),
            }
        }
        runs.iter()
            .flat_map(|&(a, b)| match b as u32 - a as u32 {
                0 => vec![a.to_string()],
                1 => vec![a.to_string(), b.to_string()],
                _ => vec![format!("{a}-{b}")],
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    if accepts("a\u{e9}a") {
        class.push_str(", non-ASCII");
    }
    if accepts("a\u{7}a") {
        class.push_str(", control characters");
    }
    vec![name.to_string(), min.to_string(), max.to_string(), class]
}

fn identifier_rows() -> Vec<Vec<String>> {
    vec![
        identifier_row("Serial", |s| Serial::new(s).is_ok()),
        identifier_row("AccountId", |s| AccountId::new(s).is_ok()),
        identifier_row("Region", |s| Region::new(s).is_ok()),
        identifier_row("DomainName", |s| DomainName::new(s).is_ok()),
        identifier_row("Text<24>", |s| Text::<24>::new(s).is_ok()),
        identifier_row("Text<63>", |s| Text::<63>::new(s).is_ok()),
    ]
}

fn payload_of(leaf: Leaf) -> &'static str {
    match leaf {
        Leaf::Command => "envelope",
        Leaf::Ack => "Ack",
        Leaf::State => "StateReport",
        Leaf::Status => "DeviceStatus",
        Leaf::Audit => "AuditReport",
        Leaf::DomainRegister => "DomainRegistration",
        Leaf::DomainResult => "DomainResult",
        Leaf::TimeRequest => "TimeRequest",
        Leaf::TimeAnswer => "time answer",
        Leaf::CertificateRequest => "CertificateRequest",
    }
}

fn topic_rows() -> Vec<Vec<String>> {
    Leaf::ALL
        .iter()
        .map(|&leaf| {
            vec![
                format!("{}/{{serial}}/{}", topics::ROOT, leaf.path()),
                if leaf.is_inbound() {
                    "cloud → device"
                } else {
                    "device → cloud"
                }
                .to_string(),
                leaf.qos().to_string(),
                yes(leaf.is_retained()),
                payload_of(leaf).to_string(),
            ]
        })
        .collect()
}

/// The provisioning topics (not under `dev/`), from the code's topic
/// builders with the placeholders put back.
fn provisioning_topic_rows() -> Vec<Vec<String>> {
    let serial = Serial::new("SERIAL").unwrap();
    let pattern = |topic: String| topic.replace("SERIAL", "{serial}");
    vec![
        vec![
            pattern(provisioning::request_topic("{claim}", &serial)),
            "device → cloud".to_string(),
            "1".to_string(),
            yes(false),
            "ProvisionRequest".to_string(),
        ],
        vec![
            pattern(provisioning::answer_topic("{claim}", &serial)),
            "cloud → device".to_string(),
            "1".to_string(),
            yes(false),
            "ProvisionAnswer".to_string(),
        ],
    ]
}

// ---------------------------------------------------------------------------
// Worst cases: the largest valid value of each message, built by hand
// (longest identifiers, every option present, largest varints, full
// collections), to show every valid value fits its limit.

fn longest(c: char, len: usize) -> String {
    std::iter::repeat_n(c, len).collect()
}

fn max_account(c: char) -> AccountRef {
    AccountRef {
        id: AccountId::new(&longest(c, limits::MAX_ACCOUNT_ID_LEN)).unwrap(),
        region: Region::new(&longest('R', limits::MAX_REGION_LEN)).unwrap(),
    }
}

fn max_serial() -> Serial {
    Serial::new(&longest('S', limits::MAX_SERIAL_LEN)).unwrap()
}

fn max_domain() -> DomainName {
    DomainName::new(&longest('d', limits::MAX_DOMAIN_LEN)).unwrap()
}

fn max_validity() -> Option<Validity> {
    Some(Validity {
        not_before: u64::MAX - 1,
        not_after: u64::MAX,
    })
}

fn max_grants() -> InstallerGrants {
    let g = Some(Grant {
        validity: max_validity(),
    });
    InstallerGrants {
        site_info: g,
        configuration: g,
        live_view: g,
        playback: g,
        may_disable_cloud: true,
    }
}

fn max_state_report() -> StateReport {
    let shares = (0..limits::MAX_SHARES)
        .map(|i| ShareEntry {
            account: max_account(char::from(b'0' + (i % 10) as u8)),
            permissions: Permissions::from_bits((1 << Action::ALL.len()) - 1).unwrap(),
            channels: ChannelScope::Only(ChannelSet::first(limits::MAX_CHANNELS as u16)),
            validity: max_validity(),
        })
        .collect::<Vec<_>>();
    StateReport {
        serial: max_serial(),
        agent_version: Text::new(&longest('v', limits::MAX_VERSION_LEN)).unwrap(),
        region: max_account('x').region,
        channel_count: u16::MAX,
        binding: Binding::Owned {
            owner: max_account('o'),
            installer: Some(max_account('i')),
            installer_grants: max_grants(),
        },
        shares: heapless::Vec::from_slice(&shares).unwrap(),
        cloud_service: true,
        platform_access: true,
        domain: max_domain(),
        last_seq: u64::MAX,
        trusted_time_floor: u64::MAX,
        reports_dropped: u32::MAX,
        clock_offset_ms: Some(i64::MIN),
        sessions_contested: u32::MAX,
        sessions_lost: u32::MAX,
        behind: true,
        command_key_ids: (0..limits::MAX_COMMAND_KEYS)
            .map(|i| 255 - i as u8)
            .collect(),
        certificate_not_after: Some(u64::MAX),
    }
}

/// The largest `RestoreState`: the largest state report's access state.
fn max_restore() -> Command {
    let report = max_state_report();
    Command {
        body: CommandBody::RestoreState {
            binding: report.binding,
            shares: report.shares,
            cloud_service: true,
            domain: Text::new(report.domain.as_str()).unwrap(),
        },
        ..max_command()
    }
}

fn max_audit_entries() -> heapless::Vec<AuditEntry, { limits::MAX_AUDIT_REPLY }> {
    (0..limits::MAX_AUDIT_REPLY)
        .map(|_| AuditEntry {
            at: u64::MAX,
            actor: AuditActor::Cloud(max_account('a').id),
            event: AuditEvent::Command {
                kind: CommandKind::Operation,
                seq: u64::MAX,
            },
            outcome: Outcome::Refused(Reason::Busy),
        })
        .collect()
}

fn max_command() -> Command {
    let accounts = (0..limits::MAX_SHARES)
        .map(|_| max_account('u').id)
        .collect::<heapless::Vec<_, { limits::MAX_SHARES }>>();
    Command {
        serial: max_serial(),
        actor: max_account('o'),
        seq: u64::MAX,
        issued_at: u64::MAX,
        body: CommandBody::Unshare { accounts },
    }
}

/// (what, largest encoding in bytes, limit name, limit).
fn worst_cases() -> Vec<(&'static str, usize, &'static str, usize)> {
    let msg = |v: &dyn erased::Encode| v.len(MAX_MESSAGE_BYTES);
    let max_reply_access = LocalReply::Access(Box::new(max_state_report()));
    let max_reply_audit = LocalReply::Audit(max_audit_entries());
    let max_authorize = LocalRequest::Authorize {
        principal: Principal::Cloud(max_account('p').id),
        action: Action::Unbind,
        channel: Some(u16::MAX),
    };
    let max_registration = DomainRegistration {
        attempt: u32::MAX,
        domain: max_domain(),
        lan_address: IpAddress::V6([0xff; 16]),
        ports: ServicePorts {
            http: u16::MAX,
            https: u16::MAX,
            rtsp: u16::MAX,
            sdk: u16::MAX,
        },
        mappings: (0..limits::MAX_PORT_MAPPINGS)
            .map(|_| PortMapping {
                transport: Transport::Udp,
                internal: u16::MAX,
                external: u16::MAX,
            })
            .collect(),
    };
    let max_result = DomainResult {
        attempt: u32::MAX,
        outcome: DomainOutcome::Registered {
            public_address: IpAddress::V6([0xff; 16]),
            expires_in: u32::MAX,
        },
    };
    let max_ack = Ack {
        seq: Some(u64::MAX),
        outcome: Outcome::Refused(Reason::Busy),
        redelivered: true,
    };
    let max_audit = AuditReport {
        serial: max_serial(),
        entries: max_audit_entries(),
    };
    let sealed = signer().seal(&max_command()).unwrap().len();
    let max_time_answer = TimeAnswer {
        serial: max_serial(),
        nonce: [0xff; time::NONCE_LEN],
        time_ms: u64::MAX,
        radius_ms: u32::MAX,
    };
    let sealed_time = signer().seal_time(&max_time_answer).unwrap().len();
    let sealed_restore = signer().seal(&max_restore()).unwrap().len();
    let max_install = Command {
        body: CommandBody::InstallCertificate {
            certificate: (0..limits::MAX_CERTIFICATE_BYTES).map(|_| 0xff).collect(),
        },
        ..max_command()
    };
    let sealed_install = signer().seal(&max_install).unwrap().len();
    let max_request = CertificateRequest {
        serial: max_serial(),
        public_key: (0..certificate::P256_PUBLIC_KEY_LEN)
            .map(|_| 0xff)
            .collect(),
        proof: (0..certificate::P256_SIGNATURE_LEN).map(|_| 0xff).collect(),
        current_not_after: u64::MAX,
    };
    let max_provision_request = ProvisionRequest {
        serial: max_serial(),
        public_key: (0..certificate::P256_PUBLIC_KEY_LEN)
            .map(|_| 0xff)
            .collect(),
        proof: (0..certificate::P256_SIGNATURE_LEN).map(|_| 0xff).collect(),
        code_proof: [0xff; 32],
    };
    let max_provision_answer = ProvisionAnswer::Issued {
        certificate: (0..limits::MAX_CERTIFICATE_BYTES).map(|_| 0xff).collect(),
    };
    vec![
        (
            "envelope (RestoreState of the largest state)",
            sealed_restore,
            "MAX_COMMAND_BYTES",
            limits::MAX_COMMAND_BYTES,
        ),
        (
            "envelope (Unshare of MAX_SHARES longest ids)",
            sealed,
            "MAX_COMMAND_BYTES",
            limits::MAX_COMMAND_BYTES,
        ),
        (
            "envelope (InstallCertificate of MAX_CERTIFICATE_BYTES)",
            sealed_install,
            "MAX_COMMAND_BYTES",
            limits::MAX_COMMAND_BYTES,
        ),
        ("Ack", msg(&max_ack), "MAX_MESSAGE_BYTES", MAX_MESSAGE_BYTES),
        (
            "StateReport",
            msg(&max_state_report()),
            "MAX_MESSAGE_BYTES",
            MAX_MESSAGE_BYTES,
        ),
        (
            "DeviceStatus",
            msg(&DeviceStatus::online(u64::MAX, u32::MAX)),
            "MAX_MESSAGE_BYTES",
            MAX_MESSAGE_BYTES,
        ),
        (
            "AuditReport",
            msg(&max_audit),
            "MAX_MESSAGE_BYTES",
            MAX_MESSAGE_BYTES,
        ),
        (
            "DomainRegistration",
            msg(&max_registration),
            "MAX_MESSAGE_BYTES",
            MAX_MESSAGE_BYTES,
        ),
        (
            "DomainResult",
            msg(&max_result),
            "MAX_MESSAGE_BYTES",
            MAX_MESSAGE_BYTES,
        ),
        (
            "TimeRequest",
            msg(&TimeRequest {
                nonce: [0xff; time::NONCE_LEN],
            }),
            "MAX_MESSAGE_BYTES",
            MAX_MESSAGE_BYTES,
        ),
        (
            "signed time answer",
            sealed_time,
            "MAX_MESSAGE_BYTES",
            MAX_MESSAGE_BYTES,
        ),
        (
            "CertificateRequest",
            msg(&max_request),
            "MAX_MESSAGE_BYTES",
            MAX_MESSAGE_BYTES,
        ),
        (
            "ProvisionRequest",
            msg(&max_provision_request),
            "MAX_MESSAGE_BYTES",
            MAX_MESSAGE_BYTES,
        ),
        (
            "ProvisionAnswer",
            msg(&max_provision_answer),
            "MAX_MESSAGE_BYTES",
            MAX_MESSAGE_BYTES,
        ),
        (
            "LocalRequest (Authorize), frame body",
            msg(&max_authorize),
            "MAX_LOCAL_FRAME_BYTES",
            MAX_LOCAL_FRAME_BYTES,
        ),
        (
            "LocalReply (Access), frame body",
            msg(&max_reply_access),
            "MAX_LOCAL_FRAME_BYTES",
            MAX_LOCAL_FRAME_BYTES,
        ),
        (
            "LocalReply (Audit), frame body",
            msg(&max_reply_audit),
            "MAX_LOCAL_FRAME_BYTES",
            MAX_LOCAL_FRAME_BYTES,
        ),
    ]
}

mod erased {
    use serde::Serialize;

    /// Lets `worst_cases` measure values of different types in one list.
    pub trait Encode {
        fn len(&self, max: usize) -> usize;
    }

    impl<T: Serialize> Encode for T {
        fn len(&self, max: usize) -> usize {
            hc_protocol::codec::encode(self, max)
                .expect("a valid value must fit its limit")
                .len()
        }
    }
}

fn worst_case_rows() -> Vec<Vec<String>> {
    worst_cases()
        .into_iter()
        .map(|(what, len, limit, _)| vec![what.to_string(), len.to_string(), limit.to_string()])
        .collect()
}

// ---------------------------------------------------------------------------
// Shapes: the field and variant lists of every wire type, read from the
// types' own `Deserialize` impls through a probing deserializer, so SPEC.md's
// type tables are checked against the code, not against a second listing.

mod shape {
    use super::*;

    #[derive(Debug)]
    pub struct Error(String);

    impl Display for Error {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Error {}

    impl de::Error for Error {
        fn custom<T: Display>(msg: T) -> Self {
            Error(msg.to_string())
        }
    }

    /// What one probe learned about the value it produced.
    #[derive(Default)]
    struct Rec {
        /// The wire type, as SPEC.md writes it.
        desc: RefCell<String>,
        /// Struct fields or struct-variant fields: (name, wire type).
        fields: RefCell<Vec<(String, String)>>,
        /// Enum variant names, and what the chosen variant carries.
        variants: RefCell<Vec<&'static str>>,
        carries: RefCell<String>,
    }

    /// A deserializer that produces the smallest valid value of a type and
    /// records its shape. `variant` picks the variant of the outermost enum.
    struct Probe<'a> {
        rec: &'a Rec,
        variant: u32,
    }

    impl<'a> Probe<'a> {
        fn leaf(rec: &'a Rec) -> Self {
            Probe { rec, variant: 0 }
        }

        fn set(&self, desc: impl Into<String>) {
            *self.rec.desc.borrow_mut() = desc.into();
        }
    }

    struct Expecting<'v, V>(&'v V);

    impl<'de, V: Visitor<'de>> Display for Expecting<'_, V> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.expecting(f)
        }
    }

    fn unsupported<T>(what: &str) -> Result<T, Error> {
        Err(Error(format!("{what} is not used on the wire")))
    }

    macro_rules! primitive {
        ($($method:ident => $visit:ident($value:expr), $desc:literal;)*) => {
            $(
                fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                    self.set($desc);
                    visitor.$visit($value)
                }
            )*
        };
    }

    /// Deserializer methods for what never appears on the wire.
    macro_rules! refused {
        ($($method:ident => $what:literal;)*) => {
            $(
                fn $method<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
                    unsupported($what)
                }
            )*
        };
    }

    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = Error;

        primitive! {
            deserialize_bool => visit_bool(false), "bool";
            deserialize_u8 => visit_u8(0), "u8";
            deserialize_u16 => visit_u16(0), "u16";
            deserialize_u32 => visit_u32(0), "u32";
            deserialize_u64 => visit_u64(0), "u64";
            deserialize_i64 => visit_i64(0), "i64";
        }

        fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.set("()");
            visitor.visit_unit()
        }

        fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            // Validated identifiers name themselves in `expecting`.
            let expecting = Expecting(&visitor).to_string();
            let bounded_text = expecting
                .strip_prefix("Text<")
                .and_then(|n| n.strip_suffix('>'))
                .is_some_and(|n| n.parse::<usize>().is_ok());
            self.set(match expecting.as_str() {
                e if bounded_text => e.to_string(),
                e if !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric()) => e.to_string(),
                _ => "string".to_string(),
            });
            visitor.visit_str("a")
        }

        fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_str(visitor)
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let inner = Rec::default();
            let value = visitor.visit_some(Probe::leaf(&inner))?;
            self.set(format!("Option<{}>", inner.desc.borrow()));
            Ok(value)
        }

        fn deserialize_unit_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            self.set(name);
            visitor.visit_unit()
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            let inner = Rec::default();
            let value = visitor.visit_newtype_struct(Probe::leaf(&inner))?;
            self.rec
                .fields
                .borrow_mut()
                .push(("0".to_string(), inner.desc.take()));
            self.set(name);
            Ok(value)
        }

        fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let inner = Rec::default();
            let value = visitor.visit_seq(Elements::new(&["0"], &inner, None))?;
            self.set(format!("Vec<{}>", inner.desc.borrow()));
            Ok(value)
        }

        fn deserialize_tuple<V: Visitor<'de>>(
            self,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, Error> {
            let inner = Rec::default();
            // Arrays are the only tuples on the wire; their elements are unnamed.
            const UNNAMED: [&str; 64] = [""; 64];
            let names = UNNAMED
                .get(..len)
                .ok_or_else(|| Error(format!("array of {len} elements")))?;
            let value = visitor.visit_seq(Elements::new(names, &inner, None))?;
            self.set(format!("[{}; {len}]", inner.desc.borrow()));
            Ok(value)
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            let value = visitor.visit_seq(Elements::new(
                fields,
                &Rec::default(),
                Some(&self.rec.fields),
            ))?;
            self.set(name);
            Ok(value)
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            name: &'static str,
            variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            *self.rec.variants.borrow_mut() = variants.to_vec();
            self.set(name);
            visitor.visit_enum(Variant {
                index: self.variant,
                rec: self.rec,
            })
        }

        refused! {
            deserialize_any => "a self-describing value";
            deserialize_i8 => "i8";
            deserialize_i16 => "i16";
            deserialize_i32 => "i32";
            deserialize_f32 => "f32";
            deserialize_f64 => "f64";
            deserialize_char => "char";
            deserialize_bytes => "bytes";
            deserialize_byte_buf => "bytes";
            deserialize_map => "a map";
            deserialize_identifier => "an identifier";
            deserialize_ignored_any => "an ignored value";
        }

        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            _: usize,
            _: V,
        ) -> Result<V::Value, Error> {
            unsupported("a tuple struct")
        }

        fn is_human_readable(&self) -> bool {
            false
        }
    }

    /// Struct fields, sequence and array elements, one probe each. With
    /// `fields`, records (name, wire type) of each element.
    struct Elements<'a> {
        names: &'static [&'static str],
        next: usize,
        rec: &'a Rec,
        fields: Option<&'a RefCell<Vec<(String, String)>>>,
    }

    impl<'a> Elements<'a> {
        fn new(
            names: &'static [&'static str],
            rec: &'a Rec,
            fields: Option<&'a RefCell<Vec<(String, String)>>>,
        ) -> Self {
            Elements {
                names,
                next: 0,
                rec,
                fields,
            }
        }
    }

    impl<'de> de::SeqAccess<'de> for Elements<'_> {
        type Error = Error;

        fn next_element_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<Option<T::Value>, Error> {
            let Some(name) = self.names.get(self.next) else {
                return Ok(None);
            };
            self.next += 1;
            let value = seed.deserialize(Probe::leaf(self.rec))?;
            if let Some(fields) = self.fields {
                fields
                    .borrow_mut()
                    .push((name.to_string(), self.rec.desc.borrow().clone()));
            }
            Ok(Some(value))
        }

        fn size_hint(&self) -> Option<usize> {
            Some(self.names.len() - self.next)
        }
    }

    struct Variant<'a> {
        index: u32,
        rec: &'a Rec,
    }

    impl<'de, 'a> de::EnumAccess<'de> for Variant<'a> {
        type Error = Error;
        type Variant = Variant<'a>;

        fn variant_seed<S: DeserializeSeed<'de>>(
            self,
            seed: S,
        ) -> Result<(S::Value, Self::Variant), Error> {
            let d: de::value::U32Deserializer<Error> = self.index.into_deserializer();
            Ok((seed.deserialize(d)?, self))
        }
    }

    impl<'de> de::VariantAccess<'de> for Variant<'_> {
        type Error = Error;

        fn unit_variant(self) -> Result<(), Error> {
            *self.rec.carries.borrow_mut() = "—".to_string();
            Ok(())
        }

        fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Error> {
            let inner = Rec::default();
            let value = seed.deserialize(Probe::leaf(&inner))?;
            *self.rec.carries.borrow_mut() = inner.desc.take();
            Ok(value)
        }

        fn tuple_variant<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Error> {
            unsupported("a tuple variant")
        }

        fn struct_variant<V: Visitor<'de>>(
            self,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            let recorded = RefCell::new(Vec::new());
            let value =
                visitor.visit_seq(Elements::new(fields, &Rec::default(), Some(&recorded)))?;
            *self.rec.carries.borrow_mut() = recorded
                .into_inner()
                .into_iter()
                .map(|(f, t)| format!("{f}: {t}"))
                .collect::<Vec<_>>()
                .join(", ");
            Ok(value)
        }
    }

    /// A wire type's checked table: struct fields, or enum variants.
    pub struct Shape {
        pub name: String,
        pub kind: &'static str,
        pub rows: Vec<Vec<String>>,
    }

    pub fn of<T: DeserializeOwned>() -> Shape {
        let rec = Rec::default();
        T::deserialize(Probe::leaf(&rec)).unwrap_or_else(|e| panic!("probe: {e}"));
        let name = rec.desc.take();
        let variants = rec.variants.take();
        if variants.is_empty() {
            let rows = rec
                .fields
                .take()
                .into_iter()
                .enumerate()
                .map(|(i, (field, wire))| vec![(i + 1).to_string(), field, wire])
                .collect();
            return Shape {
                name,
                kind: "struct",
                rows,
            };
        }
        let rows = (0..variants.len() as u32)
            .map(|index| {
                let rec = Rec::default();
                T::deserialize(Probe {
                    rec: &rec,
                    variant: index,
                })
                .unwrap_or_else(|e| panic!("probe {name} variant {index}: {e}"));
                vec![
                    index.to_string(),
                    variants[index as usize].to_string(),
                    rec.carries.take(),
                ]
            })
            .collect();
        Shape {
            name,
            kind: "enum",
            rows,
        }
    }
}

/// Every wire type SPEC.md describes with a checked table. Reason and
/// Action have their own tables; Permissions, Text and the identifiers are
/// described in prose (they are a u16 and strings on the wire).
fn shapes() -> Vec<shape::Shape> {
    vec![
        shape::of::<Command>(),
        shape::of::<AccountRef>(),
        shape::of::<CommandBody>(),
        shape::of::<BindRole>(),
        shape::of::<CommandKind>(),
        shape::of::<ChannelSet>(),
        shape::of::<ChannelScope>(),
        shape::of::<Validity>(),
        shape::of::<Grant>(),
        shape::of::<InstallerGrants>(),
        shape::of::<ShareEntry>(),
        shape::of::<LocalLevel>(),
        shape::of::<Principal>(),
        shape::of::<Decision>(),
        shape::of::<Outcome>(),
        shape::of::<Ack>(),
        shape::of::<Binding>(),
        shape::of::<StateReport>(),
        shape::of::<DeviceStatus>(),
        shape::of::<AuditActor>(),
        shape::of::<AuditEvent>(),
        shape::of::<AuditEntry>(),
        shape::of::<AuditReport>(),
        shape::of::<IpAddress>(),
        shape::of::<ServicePorts>(),
        shape::of::<Transport>(),
        shape::of::<PortMapping>(),
        shape::of::<DomainRegistration>(),
        shape::of::<DomainOutcome>(),
        shape::of::<DomainResult>(),
        shape::of::<LocalRequest>(),
        shape::of::<LinkState>(),
        shape::of::<RegistrationState>(),
        shape::of::<StatusReply>(),
        shape::of::<LocalReply>(),
        shape::of::<TimeRequest>(),
        shape::of::<TimeAnswer>(),
        shape::of::<CertificateRequest>(),
        shape::of::<ProvisionRequest>(),
        shape::of::<ProvisionAnswer>(),
    ]
}

/// Types with a hand-written table or prose instead of a shape table.
/// `CommandKeys` is no wire type: the agent keeps the key ring in its state
/// file, and §6.2 describes it.
const DESCRIBED_ELSEWHERE: &[&str] = &["Reason", "Action", "Permissions", "Text", "CommandKeys"];

/// The names of every type in src/ that derives or implements `Serialize`,
/// read from every source file present, so a new module is covered too.
fn serialized_types_in_source() -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("protocol/src") {
        let path = entry.expect("protocol/src entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let source = std::fs::read_to_string(&path).expect("source file");
            names.extend(serialized_types_in(&source));
        }
    }
    names.retain(|n| !n.starts_with('$'));
    names
}

fn serialized_types_in(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut derives_serialize = false;
    // An attribute being read, when rustfmt split it over several lines.
    let mut attribute: Option<String> = None;
    for line in source.lines().map(str::trim) {
        if let Some(open) = attribute.as_mut() {
            open.push_str(line);
            if line.ends_with(']') {
                derives_serialize |= open.starts_with("#[derive(") && open.contains("Serialize");
                attribute = None;
            }
            continue;
        }
        if line.starts_with("#[") {
            if line.ends_with(']') {
                derives_serialize |= line.starts_with("#[derive(") && line.contains("Serialize");
            } else {
                attribute = Some(line.to_string());
            }
            continue;
        }
        if line.starts_with("//") || line.starts_with("$(") || line.is_empty() {
            continue;
        }
        // `coded_enum!` derives `Serialize` for the enum it declares.
        if line.starts_with("coded_enum!") {
            derives_serialize = true;
            continue;
        }
        let declared = line
            .strip_prefix("pub struct ")
            .or_else(|| line.strip_prefix("pub enum "));
        if let Some(rest) = declared {
            if derives_serialize {
                names.push(type_name(rest));
            }
        } else if let Some((_, ty)) = line
            .strip_prefix("impl")
            .and_then(|rest| rest.split_once(" Serialize for "))
        {
            names.push(type_name(ty));
        }
        derives_serialize = false;
    }
    names
}

fn type_name(rest: &str) -> String {
    rest.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .next()
        .unwrap_or_default()
        .to_string()
}

// ---------------------------------------------------------------------------
// The tests.

#[test]
fn every_vector_in_spec_matches_the_code() {
    let spec = spec_vectors();
    let mut failures = Vec::new();
    for vector in vectors() {
        let Some(quoted) = spec.get(&vector.name) else {
            continue; // reported by `vector_markers_match_the_code`
        };
        if quoted.bytes != vector.bytes {
            failures.push(format!(
                "vector {} differs; the code now produces:\n<!-- vector: {}{} -->\n```hex\n{}\n```\n(compact: {})",
                vector.name,
                vector.name,
                vector
                    .refused
                    .map(|r| format!(" refused={}", r.name()))
                    .unwrap_or_default(),
                hex_block(&vector.bytes),
                to_hex(&vector.bytes)
            ));
        }
        let want_refused = vector.refused.map(|r| r.name().to_string());
        if quoted.refused != want_refused {
            failures.push(format!(
                "vector {}: SPEC.md says refused={:?}, the code says {:?}",
                vector.name, quoted.refused, want_refused
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn spec_vectors_decode_back_to_their_values() {
    let spec = spec_vectors();
    let mut failures = Vec::new();
    for vector in vectors() {
        if let Some(quoted) = spec.get(&vector.name) {
            if let Err(e) = (vector.check)(&quoted.bytes) {
                failures.push(format!("vector {}: {e}", vector.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn vector_markers_match_the_code() {
    let in_spec: BTreeSet<String> = spec_vectors().into_keys().collect();
    let in_code: BTreeSet<String> = vectors().iter().map(|v| v.name.to_string()).collect();
    assert_eq!(
        in_code.len(),
        vectors().len(),
        "two vectors share a name in the code"
    );
    let missing: Vec<_> = in_code.difference(&in_spec).collect();
    let unknown: Vec<_> = in_spec.difference(&in_code).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "vectors missing from SPEC.md: {missing:?}; markers in SPEC.md the code does not know: {unknown:?}"
    );
}

#[test]
fn every_command_variant_has_an_envelope_vector() {
    // Count CommandKind's variants from its own Deserialize impl, so a new
    // variant cannot be forgotten here.
    let kinds: Vec<CommandKind> = (0u8..=127)
        .map_while(|i| postcard::from_bytes::<CommandKind>(&[i]).ok())
        .collect();
    assert_eq!(kinds.len(), shape::of::<CommandBody>().rows.len());
    let want: BTreeSet<String> = kinds.iter().map(|k| envelope_name(*k)).collect();
    let story_kinds: BTreeSet<String> = story()
        .iter()
        .map(|c| envelope_name(c.body.kind()))
        .collect();
    assert_eq!(story_kinds, want, "story() must hold one command per kind");
    let seqs: Vec<u64> = story().iter().map(|c| c.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "story sequence numbers must grow"
    );
}

#[test]
fn test_key_is_the_rfc8032_test_1_key() {
    // RFC 8032, section 7.1, TEST 1.
    assert_eq!(
        to_hex(&signer().public_key()),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
}

#[test]
fn p256_test_key_is_the_rfc6979_key_and_its_proof_holds() {
    // RFC 6979, appendix A.2.5: the private key and its public key; ring
    // refuses a pair whose halves do not match.
    let rng = ring::rand::SystemRandom::new();
    ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &P256_PRIVATE_KEY,
        &P256_PUBLIC_KEY,
        &rng,
    )
    .expect("the RFC 6979 A.2.5 key pair");
    assert!(certificate_request().proof_holds());
    let other_device = CertificateRequest {
        serial: Serial::new("DS-7608-0002").unwrap(),
        ..certificate_request()
    };
    assert!(!other_device.proof_holds());
}

#[test]
fn provision_request_vector_holds_for_its_code_only() {
    // The code proof is HMAC-SHA256 keyed with the code over the code proof
    // message; the key proof an ECDSA signature by the requested key.
    let request = provision_request();
    assert_eq!(request.check(VERIFICATION_CODE), Ok(()));
    assert_eq!(request.check(b"ABCDEG"), Err(Reason::BadVerificationProof));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, VERIFICATION_CODE);
    let message = provisioning::proof_message(
        provisioning::CODE_PROOF_CONTEXT,
        &serial(),
        &P256_PUBLIC_KEY,
    );
    assert_eq!(
        ring::hmac::sign(&key, &message).as_ref(),
        &request.code_proof[..]
    );
    // The renewal's proof is not a provisioning proof: the contexts differ.
    let renewal_proof = ProvisionRequest {
        proof: heapless::Vec::from_slice(&P256_PROOF).unwrap(),
        ..provision_request()
    };
    assert_eq!(
        renewal_proof.check(VERIFICATION_CODE),
        Err(Reason::BadSignature)
    );
    assert_eq!(
        provisioning::request_topic(CLAIM, &serial()),
        "prov/claim-B7/DS-7608-0001/request"
    );
    assert_eq!(
        provisioning::parse_request_topic(&provisioning::request_topic(CLAIM, &serial())),
        Some((CLAIM, serial()))
    );
}

/// The SPEC's table of an enum (`Reason`, `Action`) lists every value:
/// `all` is complete (the next code does not decode) and its rows are the
/// table's.
fn check_enum_table<T: DeserializeOwned>(all: &[T], table: &str, rows: &[Vec<String>]) {
    assert!(
        postcard::from_bytes::<T>(&[all.len() as u8]).is_err(),
        "a code after the last of {table} decodes"
    );
    check_table(&spec_tables(), table, rows);
}

#[test]
fn reason_table_lists_every_reason() {
    check_enum_table(Reason::ALL, "reasons", &reason_rows());
}

#[test]
fn limits_table_lists_every_limit() {
    let in_source: Vec<String> = LIMITS_SOURCE
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .map(|l| l.split(':').next().unwrap().trim().to_string())
        .collect();
    let in_test: Vec<String> = LIMITS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        in_test, in_source,
        "LIMITS in this test must list every constant of limits.rs, in order"
    );
    check_table(&spec_tables(), "limits", &limit_rows());
}

#[test]
fn constant_identifier_and_topic_tables_match_the_code() {
    let tables = spec_tables();
    check_table(&tables, "constants", &constant_rows());
    check_table(&tables, "identifiers", &identifier_rows());
    check_table(&tables, "topics", &topic_rows());
    check_table(&tables, "provisioning topics", &provisioning_topic_rows());
}

#[test]
fn action_table_matches_the_code() {
    check_enum_table(Action::ALL, "actions", &action_rows());
}

#[test]
fn worst_case_table_matches_the_code_and_fits_the_limits() {
    for (what, len, limit_name, limit) in worst_cases() {
        assert!(len <= limit, "{what}: {len} bytes > {limit_name} = {limit}");
    }
    check_table(&spec_tables(), "worst-case sizes", &worst_case_rows());
}

#[test]
fn source_scan_sees_split_derives_and_manual_impls() {
    let source = "/// doc\n// note\n#[derive(\n    Debug,\n    Serialize,\n)]\n#[allow(x)]\npub struct A {\n}\n#[derive(Debug)]\npub enum B {}\nimpl<const N: usize> Serialize for C<N> {}\ncoded_enum! {\n    /// doc\n    pub enum D {\n";
    assert_eq!(serialized_types_in(source), ["A", "C", "D"]);
}

#[test]
fn type_tables_match_the_code() {
    let tables = spec_tables();
    let shapes = shapes();
    for shape in &shapes {
        check_table(
            &tables,
            &format!("{} {}", shape.kind, shape.name),
            &shape.rows,
        );
    }
    let described: BTreeSet<String> = shapes
        .iter()
        .map(|s| s.name.clone())
        .chain(DESCRIBED_ELSEWHERE.iter().map(|s| s.to_string()))
        .collect();
    let in_source = serialized_types_in_source();
    let undescribed: Vec<_> = in_source.difference(&described).collect();
    assert!(
        undescribed.is_empty(),
        "wire types without a table in SPEC.md (add them to shapes()): {undescribed:?}"
    );
    let not_found: Vec<_> = described.difference(&in_source).collect();
    assert!(
        not_found.is_empty(),
        "described types the source scan did not find (is the scan broken?): {not_found:?}"
    );
    let known_tables: BTreeSet<String> = shapes
        .iter()
        .map(|s| format!("{} {}", s.kind, s.name))
        .chain(
            [
                "reasons",
                "limits",
                "constants",
                "actions",
                "topics",
                "provisioning topics",
                "identifiers",
                "worst-case sizes",
            ]
            .map(String::from),
        )
        .collect();
    let unknown: Vec<_> = tables
        .keys()
        .filter(|t| !known_tables.contains(*t))
        .collect();
    assert!(
        unknown.is_empty(),
        "table markers in SPEC.md the test does not check: {unknown:?}"
    );
}

/// Prints every vector and checked table in SPEC.md's format.
#[test]
#[ignore = "prints the material SPEC.md quotes; run it by name"]
fn print_vectors() {
    for vector in vectors() {
        let refused = vector
            .refused
            .map(|r| format!(" refused={}", r.name()))
            .unwrap_or_default();
        println!(
            "<!-- vector: {}{refused} -->\n```hex\n{}\n```\n",
            vector.name,
            hex_block(&vector.bytes)
        );
    }
    println!("{}", render("reasons", &reason_rows()));
    println!("{}", render("limits", &limit_rows()));
    println!("{}", render("constants", &constant_rows()));
    println!("{}", render("actions", &action_rows()));
    println!("{}", render("topics", &topic_rows()));
    println!(
        "{}",
        render("provisioning topics", &provisioning_topic_rows())
    );
    println!("{}", render("identifiers", &identifier_rows()));
    println!("{}", render("worst-case sizes", &worst_case_rows()));
    for shape in shapes() {
        println!(
            "{}",
            render(&format!("{} {}", shape.kind, shape.name), &shape.rows)
        );
    }
}
