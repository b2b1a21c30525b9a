//! The core-level fixture: a device with a known identity, known accounts,
//! a [`Device`] that issues commands with growing sequence numbers the way
//! the cloud would, and the fully populated device ([`full_list`],
//! [`Device::full`]) that the decision tests, the benchmarks and the
//! measurements run on.

use hc_agent::core::{apply, decide, Applied, DeviceState, Identity};
use hc_protocol::access::{Action, Decision, LocalLevel, Principal};
use hc_protocol::command::bind_proof;
use hc_protocol::limits::{MAX_CHANNELS, MAX_SHARES};
use hc_protocol::{
    AccountId, AccountRef, BindRole, ChannelScope, ChannelSet, Command, CommandBody, Grant,
    InstallerGrants, Outcome, Permissions, Reason, Region, Serial, Text, Validity,
};

pub const SERIAL: &str = "NVR-TEST-0001";
pub const CODE: &str = "ABCDEF";
pub const REGION: &str = "EU";
pub const CHANNELS: u16 = 16;
pub const T0: u64 = 1_800_000_000;

pub fn identity() -> Identity {
    Identity {
        serial: Serial::new(SERIAL).unwrap(),
        region: Region::new(REGION).unwrap(),
        channel_count: CHANNELS,
        verification_code: Text::new(CODE).unwrap(),
    }
}

pub fn account(id: &str) -> AccountRef {
    AccountRef {
        id: AccountId::new(id).unwrap(),
        region: Region::new(REGION).unwrap(),
    }
}

pub fn foreign(id: &str) -> AccountRef {
    AccountRef {
        id: AccountId::new(id).unwrap(),
        region: Region::new("US").unwrap(),
    }
}

pub fn cloud(id: &str) -> Principal {
    Principal::Cloud(AccountId::new(id).unwrap())
}

pub fn local(level: LocalLevel) -> Principal {
    Principal::Local(level)
}

pub fn proof_for(actor: &str) -> [u8; 32] {
    bind_proof(
        CODE.as_bytes(),
        &Serial::new(SERIAL).unwrap(),
        &AccountId::new(actor).unwrap(),
    )
}

pub fn perms(actions: &[Action]) -> Permissions {
    Permissions::of(actions)
}

pub fn window(not_before: u64, not_after: u64) -> Option<Validity> {
    Some(Validity {
        not_before,
        not_after,
    })
}

pub fn share(
    to: AccountRef,
    actions: &[Action],
    channels: ChannelScope,
    validity: Option<Validity>,
) -> CommandBody {
    CommandBody::Share {
        account: to,
        permissions: perms(actions),
        channels,
        validity,
    }
}

/// A share of every channel with home account `to`.
pub fn share_all(to: &str, actions: &[Action], validity: Option<Validity>) -> CommandBody {
    share(account(to), actions, ChannelScope::All, validity)
}

/// Bob may watch every channel live for `validity`: the share the time
/// rules are tested on.
pub fn bob_live_view(validity: Option<Validity>) -> CommandBody {
    share_all("bob", &[Action::LiveView], validity)
}

/// A device and the cloud's view of it: the next sequence number and the
/// current time.
pub struct Device {
    pub state: DeviceState,
    pub seq: u64,
    pub now: u64,
}

impl Default for Device {
    fn default() -> Self {
        Device::new()
    }
}

impl Device {
    pub fn new() -> Device {
        Device::with_identity(identity())
    }

    pub fn with_identity(identity: Identity) -> Device {
        Device {
            state: DeviceState::new(identity).unwrap(),
            seq: 0,
            now: T0,
        }
    }

    /// A [`FULL_CHANNELS`]-channel device whose list [`full_list`] filled
    /// (every command accepted).
    pub fn full(grants: InstallerGrants, shares: impl IntoIterator<Item = CommandBody>) -> Device {
        let mut d = Device::with_identity(Identity {
            channel_count: FULL_CHANNELS,
            ..identity()
        });
        for (actor, body) in full_list(SERIAL, grants, shares) {
            d.expect_ok(actor, body);
        }
        d
    }

    /// Owned by alice, no installer.
    pub fn owned() -> Device {
        let mut d = Device::new();
        d.expect_ok(
            "alice",
            CommandBody::Bind {
                role: BindRole::Owner,
                proof: proof_for("alice"),
            },
        );
        d
    }

    /// Owned by alice, who shared it: `share` (e.g. [`bob_live_view`]).
    pub fn owned_and_shared(share: CommandBody) -> Device {
        let mut d = Device::owned();
        d.expect_ok("alice", share);
        d
    }

    /// Added to a site by installer "inst", not handed over.
    pub fn installer_managed() -> Device {
        let mut d = Device::new();
        d.expect_ok(
            "inst",
            CommandBody::Bind {
                role: BindRole::Installer,
                proof: proof_for("inst"),
            },
        );
        d
    }

    /// Handed over from "inst" to alice with the given grants.
    pub fn handed_over(grants: InstallerGrants) -> Device {
        let mut d = Device::installer_managed();
        d.expect_ok(
            "alice",
            CommandBody::Handover {
                installer_grants: grants,
            },
        );
        d
    }

    pub fn command(&mut self, actor: AccountRef, body: CommandBody) -> Command {
        self.seq += 1;
        Command {
            serial: self.state.identity.serial.clone(),
            actor,
            seq: self.seq,
            issued_at: self.now,
            body,
        }
    }

    /// Sends a command as `actor` (home region) and keeps the new state.
    pub fn run(&mut self, actor: &str, body: CommandBody) -> Applied {
        let command = self.command(account(actor), body);
        self.run_command(&command)
    }

    pub fn run_command(&mut self, command: &Command) -> Applied {
        let applied = apply(&self.state, command, self.now);
        self.state = applied.state.clone();
        applied
    }

    pub fn expect_ok(&mut self, actor: &str, body: CommandBody) -> Applied {
        let applied = self.run(actor, body.clone());
        assert_eq!(applied.outcome, Outcome::Accepted, "{actor} {body:?}");
        applied
    }

    /// Sends a command that must be refused with `reason` and must leave
    /// the access state exactly as it was.
    pub fn expect_refused(&mut self, actor: &str, body: CommandBody, reason: Reason) -> Applied {
        let before = self.state.access.clone();
        let applied = self.run(actor, body.clone());
        assert_eq!(
            applied.outcome,
            Outcome::Refused(reason),
            "{actor} {body:?}"
        );
        assert_eq!(
            self.state.access, before,
            "a refusal changed the access state"
        );
        applied
    }

    pub fn decide(&self, principal: &Principal, action: Action, channel: Option<u16>) -> Decision {
        decide(&self.state, principal, action, channel, self.now)
    }

    /// Asserts what [`Device::decide`] answers now.
    #[track_caller]
    pub fn expect_decision(
        &self,
        principal: &Principal,
        action: Action,
        channel: Option<u16>,
        expected: Decision,
    ) {
        assert_eq!(
            self.decide(principal, action, channel),
            expected,
            "{principal:?} {action:?} on channel {channel:?} at {}",
            self.now
        );
    }
}

// ---- the fully populated device ----

/// The fully populated device has every channel a device may have.
pub const FULL_CHANNELS: u16 = MAX_CHANNELS as u16;

/// The account of share `i`: `user000`, `user001`, ...
pub fn user(i: usize) -> String {
    format!("user{i:03}")
}

/// The channels of `i`'s parity plus the last one: 128 or 129 of the
/// [`FULL_CHANNELS`].
pub fn parity_channels(i: usize) -> ChannelSet {
    let mut set = ChannelSet::EMPTY;
    for c in (1..=FULL_CHANNELS).filter(|c| usize::from(*c) % 2 == i % 2) {
        set.insert(c);
    }
    set.insert(FULL_CHANNELS);
    set
}

/// Share `i` of the usual full list: live view, playback, alarms and
/// configuration reading on [`parity_channels`], valid for `validity`.
pub fn parity_share(i: usize, validity: Option<Validity>) -> CommandBody {
    share(
        account(&user(i)),
        &[
            Action::LiveView,
            Action::Playback,
            Action::AlarmNotifications,
            Action::ConfigRead,
        ],
        ChannelScope::Only(parity_channels(i)),
        validity,
    )
}

/// Installer grants with validity windows: site information, live view and
/// playback for `validity`, configuration without end, and the "may
/// disable the cloud service" flag.
pub fn timed_grants(validity: Option<Validity>) -> InstallerGrants {
    let timed = Some(Grant { validity });
    InstallerGrants {
        site_info: timed,
        configuration: Some(Grant { validity: None }),
        live_view: timed,
        playback: timed,
        may_disable_cloud: true,
    }
}

/// The commands (actor, body) that populate device `serial`, in the order the
/// cloud sends them: installer "inst" adds it to a site, hands it over to
/// "alice" with `grants`, and alice shares it (`shares`, usually
/// [`MAX_SHARES`] of them).
pub fn full_list(
    serial: &str,
    grants: InstallerGrants,
    shares: impl IntoIterator<Item = CommandBody>,
) -> Vec<(&'static str, CommandBody)> {
    let mut commands = vec![
        (
            "inst",
            CommandBody::Bind {
                role: BindRole::Installer,
                proof: bind_proof(
                    CODE.as_bytes(),
                    &Serial::new(serial).unwrap(),
                    &AccountId::new("inst").unwrap(),
                ),
            },
        ),
        (
            "alice",
            CommandBody::Handover {
                installer_grants: grants,
            },
        ),
    ];
    commands.extend(shares.into_iter().map(|body| ("alice", body)));
    commands
}

/// [`MAX_SHARES`] [`parity_share`]s, share `i` valid for `validity(i)`.
pub fn parity_shares(
    validity: impl Fn(usize) -> Option<Validity>,
) -> impl Iterator<Item = CommandBody> {
    (0..MAX_SHARES).map(move |i| parity_share(i, validity(i)))
}
