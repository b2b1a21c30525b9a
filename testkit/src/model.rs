//! The agent's own core as the reference model: the state a device must
//! have after a list of commands, computed in process with
//! `hc_agent::core::apply`, to compare with what the real binary reports.

use hc_agent::core::{apply, AccessState, DeviceState, Identity};
use hc_protocol::access::Action;
use hc_protocol::messages::StateReport;
use hc_protocol::{
    AccountId, ChannelScope, Command, CommandBody, Outcome, Permissions, Region, Serial, Text,
};

use crate::daemon::{account, CODE, SERIAL};

/// The identity the site's agent configuration gives the device.
pub fn identity() -> Identity {
    Identity {
        serial: Serial::new(SERIAL).unwrap(),
        region: Region::new("EU").unwrap(),
        channel_count: 8,
        verification_code: Text::new(CODE).unwrap(),
    }
}

/// Applies commands in order, each once, as a correct device does.
pub struct Model {
    pub state: DeviceState,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            state: DeviceState::new(identity()).unwrap(),
        }
    }
}

impl Model {
    /// Applies `command` (at its own issue time) and returns its outcome.
    pub fn apply(&mut self, command: &Command) -> Outcome {
        let applied = apply(&self.state, command, command.issued_at);
        self.state = applied.state;
        applied.outcome
    }

    pub fn access(&self) -> &AccessState {
        &self.state.access
    }
}

/// The access part of a state report, to compare with a model's.
pub fn access_of(report: &StateReport) -> AccessState {
    AccessState {
        binding: report.binding.clone(),
        shares: Box::new(report.shares.clone()),
        cloud_service: report.cloud_service,
        platform_access: report.platform_access,
        domain: report.domain.clone(),
    }
}

/// Command `seq` (≥ 2) of a stream in which applying any command twice
/// shows: blocks of three share a temporary account, give one of four
/// kept accounts a permission set that changes every time, and take the
/// temporary share back. A second `Unshare` is refused (`UnknownShare`),
/// a late second temporary `Share` leaves a share that should be gone,
/// and a late second kept `Share` leaves an outdated permission set.
pub fn stream_body(seq: u64) -> CommandBody {
    let share = |name: String, permissions: Permissions| CommandBody::Share {
        account: account(&name),
        permissions,
        channels: ChannelScope::All,
        validity: None,
    };
    match seq % 3 {
        2 => share(format!("tmp-{seq}"), Permissions::of(&[Action::LiveView])),
        0 => {
            // A non-empty shareable set that differs from the previous one
            // given to the same account.
            let bits = 1 + (seq / 12) % 0x7f;
            share(
                format!("keep-{}", (seq / 3) % 4),
                Permissions::from_bits(bits as u16).unwrap(),
            )
        }
        _ => CommandBody::Unshare {
            accounts: [AccountId::new(&format!("tmp-{}", seq - 2)).unwrap()]
                .into_iter()
                .collect(),
        },
    }
}

/// Command `seq` of the stream alice sends: her owner bind first, then
/// [`stream_body`].
pub fn stream_command(seq: u64) -> CommandBody {
    if seq == 1 {
        bind_owner_body("alice")
    } else {
        stream_body(seq)
    }
}

/// A share of live view on every channel for `who`, in `validity`.
pub fn live_view_share(who: &str, validity: Option<hc_protocol::Validity>) -> CommandBody {
    CommandBody::Share {
        account: account(who),
        permissions: hc_protocol::Permissions::of(&[Action::LiveView]),
        channels: hc_protocol::ChannelScope::All,
        validity,
    }
}

/// [`live_view_share`] for `who`, valid from an hour before `now` (Unix
/// seconds) to an hour after.
pub fn live_view_share_around(who: &str, now: u64) -> CommandBody {
    let window = hc_protocol::Validity {
        not_before: now - 3_600,
        not_after: now + 3_600,
    };
    live_view_share(who, Some(window))
}

/// `Bind { role: Owner }` for `owner`, with the right proof.
pub fn bind_owner_body(owner: &str) -> CommandBody {
    bind_body(owner, hc_protocol::BindRole::Owner)
}

/// `account` binds the test device in `role`, with the right proof.
pub fn bind_body(account: &str, role: hc_protocol::BindRole) -> CommandBody {
    CommandBody::Bind {
        role,
        proof: hc_protocol::command::bind_proof(
            CODE.as_bytes(),
            &Serial::new(SERIAL).unwrap(),
            &AccountId::new(account).unwrap(),
        ),
    }
}

/// For each sequence number, how many log lines of the agent say it applied
/// that command fresh ("command accepted ... redelivered=false"; the line
/// is written once the state reached flash).
pub fn fresh_applications(log: &str) -> std::collections::BTreeMap<u64, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for line in log.lines() {
        let fresh = line.contains("command accepted") && line.contains("redelivered=false");
        if !fresh {
            continue;
        }
        if let Some(seq) = field(line, "seq=") {
            *counts.entry(seq).or_insert(0) += 1;
        }
    }
    counts
}

/// The number after `name` in a log line.
pub fn field(line: &str, name: &str) -> Option<u64> {
    let start = line.find(name)? + name.len();
    let digits: String = line[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// A small deterministic random source (xorshift64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
}

/// The owner deletes the share of `account`.
pub fn unshare_body(account: &str) -> CommandBody {
    CommandBody::Unshare {
        accounts: heapless::Vec::from_slice(&[AccountId::new(account).unwrap()]).unwrap(),
    }
}
