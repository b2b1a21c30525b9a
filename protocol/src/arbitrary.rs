//! Proptest strategies for every value that crosses a boundary: commands
//! (every `CommandBody` variant), signed-envelope inputs, the messages the
//! device publishes, domain registration and the local-socket requests and
//! replies.
//!
//! Every generated value is valid: identifiers follow their rules (§5 of
//! `SPEC.md`), bounded collections stay within their capacity, permission
//! sets use only defined bits and channel sets only channels `1..=256`. So
//! every value encodes within its message's limit and decodes back to
//! itself. Collections are sometimes full and identifiers sometimes as long
//! as allowed, so the worst-case sizes get exercised too. Validity windows
//! and other values the wire does not constrain are not made "sensible":
//! an empty or reversed window is a valid message the device must refuse.
//!
//! Enabled by the `arbitrary` feature (and in this crate's own unit tests).
//! Strategies over enums with many variants are built from nested, boxed
//! unions: proptest builds every alternative of a wide union eagerly.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use proptest::array::uniform2;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use crate::access::{
    Action, ChannelScope, ChannelSet, Decision, Grant, InstallerGrants, LocalLevel, Permissions,
    Principal, ShareEntry, Validity,
};
use crate::command::{BindRole, Command, CommandBody, CommandKind};
use crate::ddns::{
    DomainOutcome, DomainRegistration, DomainResult, IpAddress, PortMapping, ServicePorts,
    Transport,
};
use crate::envelope::{CommandKeys, CommandSigner, PUBLIC_KEY_LEN};
use crate::ids::{AccountId, AccountRef, DomainName, Region, Serial, Text};
use crate::limits::{
    MAX_ACCOUNT_ID_LEN, MAX_AUDIT_REPLY, MAX_CERTIFICATE_BYTES, MAX_CHANNELS, MAX_COMMAND_KEYS,
    MAX_DOMAIN_LEN, MAX_PORT_MAPPINGS, MAX_REGION_LEN, MAX_SERIAL_LEN, MAX_SHARES, MAX_VERSION_LEN,
};
use crate::local::{LinkState, LocalReply, LocalRequest, RegistrationState, StatusReply};
use crate::messages::{
    Ack, AuditActor, AuditEntry, AuditEvent, AuditReport, Binding, DeviceStatus, Outcome,
    StateReport,
};
use crate::reason::Reason;
use crate::time::{TimeAnswer, TimeRequest, NONCE_LEN};

/// A proptest configuration of `cases` cases that writes no regression
/// files (the tree stays clean).
pub fn test_config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

// ---------------------------------------------------------------------------
// Text and identifiers

/// Characters allowed in serials and regions: `[A-Za-z0-9_-]`.
const TOPIC_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
/// Characters allowed in a domain label: `[a-z0-9-]`.
const DNS_LABEL: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";

/// Any character that is not a control character: mostly printable ASCII,
/// sometimes anything else in Unicode (2 to 4 bytes of UTF-8).
pub fn any_printable_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => (0x20u8..0x7f).prop_map(char::from),
        1 => any::<char>().prop_map(|c| if c.is_control() { '\u{fffd}' } else { c }),
    ]
}

/// A string of `chars` of at least `min_bytes` and at most `max_bytes`
/// bytes of UTF-8 (characters that would overflow are dropped; `min_bytes`
/// is met when `chars` can produce one-byte characters).
fn bounded_string(
    chars: impl Strategy<Value = char>,
    min_bytes: usize,
    max_bytes: usize,
) -> impl Strategy<Value = String> {
    // Half the time as long as possible, so the longest forms get tested.
    let lengths = prop_oneof![Just(max_bytes), min_bytes..=max_bytes];
    (lengths, vec(chars, max_bytes)).prop_map(move |(target, chars)| {
        let mut out = String::new();
        for c in chars {
            if out.len() + c.len_utf8() <= target {
                out.push(c);
            }
        }
        while out.len() < min_bytes {
            out.push('a');
        }
        out
    })
}

fn ascii_string(alphabet: &'static [u8], min: usize, max: usize) -> impl Strategy<Value = String> {
    bounded_string(select(alphabet).prop_map(char::from), min, max)
}

/// Bounded text (`Text<N>`): 0 to N bytes, no control characters.
pub fn any_text<const N: usize>() -> impl Strategy<Value = Text<N>> {
    bounded_string(any_printable_char(), 0, N)
        .prop_map(|s| Text::new(&s).expect("generated text is valid"))
}

/// A device serial: `[A-Za-z0-9_-]{1,48}`.
pub fn any_serial() -> impl Strategy<Value = Serial> {
    ascii_string(TOPIC_SAFE, 1, MAX_SERIAL_LEN)
        .prop_map(|s| Serial::new(&s).expect("generated serial is valid"))
}

/// A region code: `[A-Za-z0-9_-]{1,8}`.
pub fn any_region() -> impl Strategy<Value = Region> {
    ascii_string(TOPIC_SAFE, 1, MAX_REGION_LEN)
        .prop_map(|s| Region::new(&s).expect("generated region is valid"))
}

/// A cloud account id: 1 to 64 bytes of visible ASCII (`0x21..=0x7E`).
pub fn any_account_id() -> impl Strategy<Value = AccountId> {
    bounded_string((0x21u8..=0x7e).prop_map(char::from), 1, MAX_ACCOUNT_ID_LEN)
        .prop_map(|s| AccountId::new(&s).expect("generated account id is valid"))
}

/// A domain name: one DNS label of 1 to 63 bytes of `[a-z0-9-]`, with no
/// hyphen at either end.
pub fn any_domain_name() -> impl Strategy<Value = DomainName> {
    ascii_string(DNS_LABEL, 1, MAX_DOMAIN_LEN).prop_map(|s| {
        let mut bytes = s.into_bytes();
        let last = bytes.len() - 1;
        for i in [0, last] {
            if bytes[i] == b'-' {
                bytes[i] = b'0';
            }
        }
        let s = String::from_utf8(bytes).expect("ASCII");
        DomainName::new(&s).expect("generated domain name is valid")
    })
}

/// Any valid `AccountRef`.
pub fn any_account_ref() -> impl Strategy<Value = AccountRef> {
    (any_account_id(), any_region()).prop_map(|(id, region)| AccountRef { id, region })
}

// ---------------------------------------------------------------------------
// Access vocabulary

/// Any `Action`, each variant equally likely.
pub fn any_action() -> impl Strategy<Value = Action> {
    select(Action::ALL)
}

/// Any `Reason`, each variant equally likely.
pub fn any_reason() -> impl Strategy<Value = Reason> {
    select(Reason::ALL)
}

/// Any set of defined actions.
pub fn any_permissions() -> impl Strategy<Value = Permissions> {
    let valid = (1u16 << Action::ALL.len()) - 1;
    any::<u16>().prop_map(move |bits| Permissions::from_bits(bits & valid).expect("valid bits"))
}

/// Any set of channels `1..=MAX_CHANNELS`: empty, full, or some channels.
pub fn any_channel_set() -> impl Strategy<Value = ChannelSet> {
    prop_oneof![
        1 => Just(ChannelSet::EMPTY),
        1 => Just(ChannelSet::first(MAX_CHANNELS as u16)),
        1 => (0..=MAX_CHANNELS as u16).prop_map(ChannelSet::first),
        4 => vec(1..=MAX_CHANNELS as u16, 0..24).prop_map(|channels| {
            ChannelSet::from_channels(&channels).expect("channels in range")
        }),
    ]
}

/// Any `ChannelScope`: every variant, with any valid fields.
pub fn any_channel_scope() -> impl Strategy<Value = ChannelScope> {
    prop_oneof![
        Just(ChannelScope::All),
        any_channel_set().prop_map(ChannelScope::Only),
    ]
}

/// Any window, well-formed or not (the wire does not constrain it).
pub fn any_validity() -> impl Strategy<Value = Validity> {
    prop_oneof![
        3 => (any::<u64>(), any::<u64>()),
        1 => (0u64..2_000_000_000, 0u64..2_000_000_000),
    ]
    .prop_map(|(not_before, not_after)| Validity {
        not_before,
        not_after,
    })
}

/// Any valid `Grant`.
pub fn any_grant() -> impl Strategy<Value = Grant> {
    option::of(any_validity()).prop_map(|validity| Grant { validity })
}

/// Any valid `InstallerGrants`.
pub fn any_installer_grants() -> impl Strategy<Value = InstallerGrants> {
    installer_grants_from(|| option::of(any_grant()))
}

/// `InstallerGrants` whose four permissions each come from `grant` (for
/// tests that want, say, only windows around a given time), with any
/// `may_disable_cloud`.
pub fn installer_grants_from<S: Strategy<Value = Option<Grant>>>(
    grant: impl Fn() -> S,
) -> impl Strategy<Value = InstallerGrants> {
    ([grant(), grant(), grant(), grant()], any::<bool>()).prop_map(
        |([site_info, configuration, live_view, playback], may_disable_cloud)| InstallerGrants {
            site_info,
            configuration,
            live_view,
            playback,
            may_disable_cloud,
        },
    )
}

/// Any valid `ShareEntry`.
pub fn any_share_entry() -> impl Strategy<Value = ShareEntry> {
    (
        any_account_ref(),
        any_permissions(),
        any_channel_scope(),
        option::of(any_validity()),
    )
        .prop_map(|(account, permissions, channels, validity)| ShareEntry {
            account,
            permissions,
            channels,
            validity,
        })
}

/// Any `LocalLevel`, each variant equally likely.
pub fn any_local_level() -> impl Strategy<Value = LocalLevel> {
    select(&[LocalLevel::Admin, LocalLevel::Operator, LocalLevel::Guest][..])
}

/// Any `Principal`: every variant, with any valid fields.
pub fn any_principal() -> impl Strategy<Value = Principal> {
    prop_oneof![
        any_account_id().prop_map(Principal::Cloud),
        any_local_level().prop_map(Principal::Local),
    ]
}

/// Any `Decision`: every variant, with any valid fields.
pub fn any_decision() -> impl Strategy<Value = Decision> {
    prop_oneof![Just(Decision::Allow), any_reason().prop_map(Decision::Deny),]
}

/// Any `Outcome`: every variant, with any valid fields.
pub fn any_outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Accepted),
        any_reason().prop_map(Outcome::Refused),
    ]
}

/// A channel argument: none, a plausible channel, or any number at all.
fn any_channel_arg() -> impl Strategy<Value = Option<u16>> {
    prop_oneof![
        1 => Just(None),
        3 => (0..=MAX_CHANNELS as u16 + 1).prop_map(Some),
        1 => any::<u16>().prop_map(Some),
    ]
}

// ---------------------------------------------------------------------------
// Commands

/// Any `BindRole`, each variant equally likely.
pub fn any_bind_role() -> impl Strategy<Value = BindRole> {
    select(&[BindRole::Owner, BindRole::Installer][..])
}

/// Every `CommandKind`, in declaration order.
pub const COMMAND_KINDS: &[CommandKind] = &[
    CommandKind::Bind,
    CommandKind::Unbind,
    CommandKind::Share,
    CommandKind::Unshare,
    CommandKind::UnshareAll,
    CommandKind::LeaveShare,
    CommandKind::Handover,
    CommandKind::GrantInstaller,
    CommandKind::RevokeInstaller,
    CommandKind::SetCloudService,
    CommandKind::SetDomain,
    CommandKind::RequestState,
    CommandKind::RequestAudit,
    CommandKind::Operation,
    CommandKind::AuthorizeInstaller,
    CommandKind::ShareDomain,
    CommandKind::RestoreState,
    CommandKind::AddCommandKey,
    CommandKind::RemoveCommandKey,
    CommandKind::InstallCertificate,
];

/// Any `CommandKind`, each variant equally likely.
pub fn any_command_kind() -> impl Strategy<Value = CommandKind> {
    select(COMMAND_KINDS)
}

/// Up to `N` values of `element`: empty and full lists are as likely as any
/// length in between.
fn bounded_vec<S: Strategy, const N: usize>(
    element: fn() -> S,
) -> impl Strategy<Value = heapless::Vec<S::Value, N>> {
    prop_oneof![
        1 => Just(0usize),
        1 => Just(N),
        4 => 0..=N,
    ]
    .prop_flat_map(move |len| vec(element(), len))
    .prop_map(|items| items.into_iter().collect())
}

/// Every variant of `CommandBody`, each with any valid fields.
pub fn any_command_body() -> impl Strategy<Value = CommandBody> {
    // Nested unions of at most seven (see the module documentation).
    let access = prop_oneof![
        (any_bind_role(), any::<[u8; 32]>())
            .prop_map(|(role, proof)| CommandBody::Bind { role, proof }),
        Just(CommandBody::Unbind),
        (
            any_account_ref(),
            any_permissions(),
            any_channel_scope(),
            option::of(any_validity()),
        )
            .prop_map(
                |(account, permissions, channels, validity)| CommandBody::Share {
                    account,
                    permissions,
                    channels,
                    validity,
                }
            ),
        bounded_vec::<_, MAX_SHARES>(any_account_id)
            .prop_map(|accounts| CommandBody::Unshare { accounts }),
        Just(CommandBody::UnshareAll),
        Just(CommandBody::LeaveShare),
        any_installer_grants()
            .prop_map(|installer_grants| CommandBody::Handover { installer_grants }),
    ];
    let other = prop_oneof![
        any_installer_grants().prop_map(|grants| CommandBody::GrantInstaller { grants }),
        Just(CommandBody::RevokeInstaller),
        any::<bool>().prop_map(|enabled| CommandBody::SetCloudService { enabled }),
        // Any text: the device validates the name, the wire does not.
        prop_oneof![
            any_domain_name().prop_map(|d| Text::new(&d).expect("a domain name is valid text")),
            any_text::<MAX_DOMAIN_LEN>(),
        ]
        .prop_map(|name| CommandBody::SetDomain { name }),
        Just(CommandBody::RequestState),
        any::<u16>().prop_map(|max| CommandBody::RequestAudit { max }),
        (any_action(), any_channel_arg())
            .prop_map(|(action, channel)| CommandBody::Operation { action, channel }),
    ];
    let restore = (
        any_binding(),
        bounded_vec::<_, MAX_SHARES>(any_share_entry),
        any::<bool>(),
        any_text::<MAX_DOMAIN_LEN>(),
    )
        .prop_map(
            |(binding, shares, cloud_service, domain)| CommandBody::RestoreState {
                binding,
                shares,
                cloud_service,
                domain,
            },
        );
    let appended = prop_oneof![
        (any_account_ref(), any_installer_grants())
            .prop_map(|(installer, grants)| CommandBody::AuthorizeInstaller { installer, grants }),
        any_account_ref().prop_map(|account| CommandBody::ShareDomain { account }),
        (any::<u8>(), any::<[u8; PUBLIC_KEY_LEN]>())
            .prop_map(|(key_id, public_key)| CommandBody::AddCommandKey { key_id, public_key }),
        any::<u8>().prop_map(|key_id| CommandBody::RemoveCommandKey { key_id }),
        bounded_vec::<_, MAX_CERTIFICATE_BYTES>(any::<u8>)
            .prop_map(|certificate| CommandBody::InstallCertificate { certificate }),
    ];
    prop_oneof![7 => access.boxed(), 7 => other.boxed(), 4 => appended.boxed(), 1 => restore.boxed()]
}

/// A sequence number or time: small, huge, or anything.
fn any_counter() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => 0u64..1_000,
        1 => Just(u64::MAX),
        3 => any::<u64>(),
    ]
}

/// Any valid `Command`.
pub fn any_command() -> impl Strategy<Value = Command> {
    any_command_for(any_serial())
}

/// A command for the device `serial` (or any serial strategy).
pub fn any_command_for(serial: impl Strategy<Value = Serial>) -> impl Strategy<Value = Command> {
    (
        serial,
        any_account_ref(),
        any_counter(),
        any_counter(),
        any_command_body(),
    )
        .prop_map(|(serial, actor, seq, issued_at, body)| Command {
            serial,
            actor,
            seq,
            issued_at,
            body,
        })
}

// ---------------------------------------------------------------------------
// Envelope inputs

/// Everything a signed envelope is made from: the cloud's signing seed, the
/// key id it signs under and the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeCase {
    /// The Ed25519 seed of the signing key.
    pub seed: [u8; 32],
    /// The id the key is pinned under.
    pub key_id: u8,
    /// The command to seal.
    pub command: Command,
}

impl EnvelopeCase {
    /// The cloud's signer for this case.
    pub fn signer(&self) -> CommandSigner {
        CommandSigner::from_seed(self.key_id, &self.seed).expect("any 32-byte seed is a key")
    }

    /// The public key a device pins for this case.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.signer().public_key()
    }

    /// The device's key ring with just this signer's key pinned.
    pub fn keys(&self) -> CommandKeys {
        let mut keys = CommandKeys::new();
        assert!(keys.pin(self.key_id, self.public_key()));
        keys
    }

    /// The signed envelope bytes.
    pub fn seal(&self) -> Vec<u8> {
        self.signer()
            .seal(&self.command)
            .expect("generated commands fit the envelope")
    }
}

/// Any seed, any key id and any valid command.
pub fn any_envelope_case() -> impl Strategy<Value = EnvelopeCase> {
    (any::<[u8; 32]>(), any::<u8>(), any_command()).prop_map(|(seed, key_id, command)| {
        EnvelopeCase {
            seed,
            key_id,
            command,
        }
    })
}

// ---------------------------------------------------------------------------
// Device → cloud messages

/// Any valid `Ack`.
pub fn any_ack() -> impl Strategy<Value = Ack> {
    (option::of(any_counter()), any_outcome(), any::<bool>()).prop_map(
        |(seq, outcome, redelivered)| Ack {
            seq,
            outcome,
            redelivered,
        },
    )
}

/// Any `Binding`: every variant, with any valid fields.
pub fn any_binding() -> impl Strategy<Value = Binding> {
    prop_oneof![
        Just(Binding::Unbound),
        any_account_ref().prop_map(|installer| Binding::InstallerManaged { installer }),
        (
            any_account_ref(),
            option::of(any_account_ref()),
            any_installer_grants()
        )
            .prop_map(|(owner, installer, installer_grants)| Binding::Owned {
                owner,
                installer,
                installer_grants,
            }),
    ]
}

prop_compose! {
    /// Any valid `StateReport`, sometimes with `MAX_SHARES` shares.
    pub fn any_state_report()(
        serial in any_serial(),
        agent_version in any_text::<MAX_VERSION_LEN>(),
        region in any_region(),
        channel_count in any::<u16>(),
        binding in any_binding(),
        shares in bounded_vec::<_, MAX_SHARES>(any_share_entry),
        [cloud_service, platform_access] in any::<[bool; 2]>(),
        domain in any_domain_name(),
        [last_seq, trusted_time_floor] in uniform2(any_counter()),
        reports_dropped in any::<u32>(),
        clock_offset_ms in any::<Option<i64>>(),
        [sessions_contested, sessions_lost] in any::<[u32; 2]>(),
        behind in any::<bool>(),
        command_key_ids in any_key_ids(),
        certificate_not_after in option::of(any_counter()),
    ) -> StateReport {
        StateReport {
            serial,
            agent_version,
            region,
            channel_count,
            binding,
            shares,
            cloud_service,
            platform_access,
            domain,
            last_seq,
            trusted_time_floor,
            reports_dropped,
            clock_offset_ms,
            sessions_contested,
            sessions_lost,
            behind,
            command_key_ids,
            certificate_not_after,
        }
    }
}

/// Any valid `DeviceStatus`.
pub fn any_device_status() -> impl Strategy<Value = DeviceStatus> {
    (any::<bool>(), any::<u64>(), any::<u32>()).prop_map(|(online, written_s, refresh_s)| {
        DeviceStatus {
            online,
            written_s,
            refresh_s,
        }
    })
}

/// Any `AuditActor`: every variant, with any valid fields.
pub fn any_audit_actor() -> impl Strategy<Value = AuditActor> {
    prop_oneof![
        any_account_id().prop_map(AuditActor::Cloud),
        any_local_level().prop_map(AuditActor::Local),
        Just(AuditActor::Device),
    ]
}

/// Any `AuditEvent`: every variant, with any valid fields.
pub fn any_audit_event() -> impl Strategy<Value = AuditEvent> {
    prop_oneof![
        (any_action(), any_channel_arg())
            .prop_map(|(action, channel)| AuditEvent::Decision { action, channel }),
        (any_command_kind(), any_counter())
            .prop_map(|(kind, seq)| AuditEvent::Command { kind, seq }),
        any::<bool>().prop_map(|enabled| AuditEvent::PlatformAccess { enabled }),
        Just(AuditEvent::EnvelopeRefused),
        Just(AuditEvent::LocalUnbind),
        Just(AuditEvent::SessionContested),
        Just(AuditEvent::SessionLost),
    ]
}

/// Any valid `AuditEntry`.
pub fn any_audit_entry() -> impl Strategy<Value = AuditEntry> {
    (
        any_counter(),
        any_audit_actor(),
        any_audit_event(),
        any_outcome(),
    )
        .prop_map(|(at, actor, event, outcome)| AuditEntry {
            at,
            actor,
            event,
            outcome,
        })
}

fn any_audit_entries() -> impl Strategy<Value = heapless::Vec<AuditEntry, MAX_AUDIT_REPLY>> {
    bounded_vec::<_, MAX_AUDIT_REPLY>(any_audit_entry)
}

/// Any valid `AuditReport`.
pub fn any_audit_report() -> impl Strategy<Value = AuditReport> {
    (any_serial(), any_audit_entries())
        .prop_map(|(serial, entries)| AuditReport { serial, entries })
}

// ---------------------------------------------------------------------------
// Domain registration

/// Any `IpAddress`: every variant, with any valid fields.
pub fn any_ip_address() -> impl Strategy<Value = IpAddress> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddress::V4),
        any::<[u8; 16]>().prop_map(IpAddress::V6),
    ]
}

/// Any valid `ServicePorts`.
pub fn any_service_ports() -> impl Strategy<Value = ServicePorts> {
    any::<[u16; 4]>().prop_map(|[http, https, rtsp, sdk]| ServicePorts {
        http,
        https,
        rtsp,
        sdk,
    })
}

/// Any `Transport`, each variant equally likely.
pub fn any_transport() -> impl Strategy<Value = Transport> {
    select(&[Transport::Tcp, Transport::Udp][..])
}

/// Any valid `PortMapping`.
pub fn any_port_mapping() -> impl Strategy<Value = PortMapping> {
    (any_transport(), any::<u16>(), any::<u16>()).prop_map(|(transport, internal, external)| {
        PortMapping {
            transport,
            internal,
            external,
        }
    })
}

/// Any valid `DomainRegistration`.
pub fn any_domain_registration() -> impl Strategy<Value = DomainRegistration> {
    (
        any::<u32>(),
        any_domain_name(),
        any_ip_address(),
        any_service_ports(),
        bounded_vec::<_, MAX_PORT_MAPPINGS>(any_port_mapping),
    )
        .prop_map(
            |(attempt, domain, lan_address, ports, mappings)| DomainRegistration {
                attempt,
                domain,
                lan_address,
                ports,
                mappings,
            },
        )
}

/// Any `DomainOutcome`: every variant, with any valid fields.
pub fn any_domain_outcome() -> impl Strategy<Value = DomainOutcome> {
    prop_oneof![
        (any_ip_address(), any::<u32>()).prop_map(|(public_address, expires_in)| {
            DomainOutcome::Registered {
                public_address,
                expires_in,
            }
        }),
        Just(DomainOutcome::NameTaken),
        Just(DomainOutcome::Invalid),
    ]
}

/// Any valid `DomainResult`.
pub fn any_domain_result() -> impl Strategy<Value = DomainResult> {
    (any::<u32>(), any_domain_outcome())
        .prop_map(|(attempt, outcome)| DomainResult { attempt, outcome })
}

// ---------------------------------------------------------------------------
// Local socket

/// Any `LocalRequest`: every variant, with any valid fields.
pub fn any_local_request() -> impl Strategy<Value = LocalRequest> {
    prop_oneof![
        (any_principal(), any_action(), any_channel_arg()).prop_map(
            |(principal, action, channel)| LocalRequest::Authorize {
                principal,
                action,
                channel,
            }
        ),
        Just(LocalRequest::Status),
        Just(LocalRequest::ListAccess),
        (any_local_level(), any::<bool>())
            .prop_map(|(by, enabled)| LocalRequest::SetPlatformAccess { by, enabled }),
        any::<u16>().prop_map(|max| LocalRequest::RecentAudit { max }),
        any_local_level().prop_map(|by| LocalRequest::Unbind { by }),
    ]
}

/// Any `LinkState`, each variant equally likely.
pub fn any_link_state() -> impl Strategy<Value = LinkState> {
    select(
        &[
            LinkState::Connected,
            LinkState::Connecting,
            LinkState::Disabled,
        ][..],
    )
}

/// Any `RegistrationState`: every variant, with any valid fields.
pub fn any_registration_state() -> impl Strategy<Value = RegistrationState> {
    prop_oneof![
        Just(RegistrationState::NotRegistered),
        Just(RegistrationState::Pending),
        any_counter().prop_map(|expires_at| RegistrationState::Registered { expires_at }),
        Just(RegistrationState::NameTaken),
        Just(RegistrationState::Invalid),
    ]
}

prop_compose! {
    /// Any valid `StatusReply`.
    pub fn any_status_reply()(
        serial in any_serial(),
        link in any_link_state(),
        [bound, handed_over, cloud_service, platform_access] in any::<[bool; 4]>(),
        domain in any_domain_name(),
        registration in any_registration_state(),
        last_seq in any_counter(),
        clock_trusted in any::<bool>(),
        [reports_queued, reports_dropped] in any::<[u32; 2]>(),
        clock_offset_ms in any::<Option<i64>>(),
        command_key_ids in any_key_ids(),
        certificate_not_after in option::of(any_counter()),
    ) -> StatusReply {
        StatusReply {
            serial,
            link,
            bound,
            handed_over,
            cloud_service,
            platform_access,
            domain,
            registration,
            last_seq,
            clock_trusted,
            reports_queued,
            reports_dropped,
            clock_offset_ms,
            command_key_ids,
            certificate_not_after,
        }
    }
}

/// The ids of a device's key ring as it reports them: distinct, ascending,
/// up to `MAX_COMMAND_KEYS` (none is valid on the wire, though a device
/// never holds zero keys).
pub fn any_key_ids() -> impl Strategy<Value = heapless::Vec<u8, MAX_COMMAND_KEYS>> {
    proptest::collection::btree_set(any::<u8>(), 0..=MAX_COMMAND_KEYS)
        .prop_map(|ids| ids.into_iter().collect())
}

/// Any `TimeRequest`.
pub fn any_time_request() -> impl Strategy<Value = TimeRequest> {
    any::<[u8; NONCE_LEN]>().prop_map(|nonce| TimeRequest { nonce })
}

prop_compose! {
    /// Any valid `TimeAnswer`.
    pub fn any_time_answer()(
        serial in any_serial(),
        nonce in any::<[u8; NONCE_LEN]>(),
        time_ms in any_counter(),
        radius_ms in any::<u32>(),
    ) -> TimeAnswer {
        TimeAnswer { serial, nonce, time_ms, radius_ms }
    }
}

/// Any `LocalReply`: every variant, with any valid fields.
pub fn any_local_reply() -> impl Strategy<Value = LocalReply> {
    prop_oneof![
        any_decision().prop_map(LocalReply::Decision),
        any_status_reply().prop_map(|s| LocalReply::Status(Box::new(s))),
        any_state_report().prop_map(|r| LocalReply::Access(Box::new(r))),
        any_audit_entries().prop_map(LocalReply::Audit),
        Just(LocalReply::Done),
        any_reason().prop_map(LocalReply::Error),
    ]
}
