//! Benchmarks of the sans-IO core on a full access list: `MAX_SHARES`
//! shares on a `MAX_CHANNELS`-channel device, every share with a channel
//! list of 128 or 129 channels and a validity window, and a handed-over
//! installer with timed grants.
//!
//! - `decide/*`: one access decision (shared user, last share, allowed; the
//!   same user on a channel outside its scope; the owner; an unknown
//!   account).
//! - `apply/*`: a Share command that inserts into a list one short of full,
//!   alone and followed by the postcard encoding of the new state (what the
//!   shell writes to flash).
//! - `postcard/*`: encoding and decoding of the full state.
//!
//! Run: `cargo bench -p hc-agent --bench core -- --warm-up-time 1 --measurement-time 3`
//! (figures in agent/BENCHMARKS.md).

use std::hint::black_box;

use agent::core::{apply, decide, DeviceState, Identity};
use criterion::{criterion_group, criterion_main, Criterion};
use protocol::access::{Action, Decision, Principal};
use protocol::command::bind_proof;
use protocol::limits::{MAX_CHANNELS, MAX_SHARES};
use protocol::{
    AccountId, AccountRef, BindRole, ChannelScope, ChannelSet, Command, CommandBody, Grant,
    InstallerGrants, Outcome, Permissions, Region, Serial, Text, Validity,
};

const SERIAL: &str = "NVR-BENCH-0001";
const CODE: &str = "ABCDEF";
const REGION: &str = "EU";
const T0: u64 = 1_800_000_000;
const NOW: u64 = T0 + 10;
const CHANNELS: u16 = MAX_CHANNELS as u16;

fn account(id: &str) -> AccountRef {
    AccountRef {
        id: AccountId::new(id).unwrap(),
        region: Region::new(REGION).unwrap(),
    }
}

fn cloud(id: &str) -> Principal {
    Principal::Cloud(AccountId::new(id).unwrap())
}

fn user(i: usize) -> String {
    format!("user{i:03}")
}

fn window(i: usize) -> Option<Validity> {
    Some(Validity {
        not_before: T0 - 1_000,
        not_after: T0 + 100_000 + i as u64,
    })
}

/// Channels of the index's parity, plus channel 256.
fn channels_of(i: usize) -> ChannelScope {
    let mut set = ChannelSet::EMPTY;
    for c in (1..=CHANNELS).filter(|c| usize::from(*c) % 2 == i % 2) {
        set.insert(c);
    }
    set.insert(CHANNELS);
    ChannelScope::Only(set)
}

fn share(i: usize) -> CommandBody {
    CommandBody::Share {
        account: account(&user(i)),
        permissions: Permissions::of(&[
            Action::LiveView,
            Action::Playback,
            Action::AlarmNotifications,
            Action::ConfigRead,
        ]),
        channels: channels_of(i),
        validity: window(i),
    }
}

/// Drives the core the way the cloud would: growing sequence numbers.
struct Cloud {
    state: DeviceState,
    seq: u64,
}

impl Cloud {
    fn command(&mut self, actor: &str, body: CommandBody) -> Command {
        self.seq += 1;
        Command {
            serial: Serial::new(SERIAL).unwrap(),
            actor: account(actor),
            seq: self.seq,
            issued_at: T0,
            body,
        }
    }

    fn run(&mut self, actor: &str, body: CommandBody) {
        let command = self.command(actor, body);
        let applied = apply(&self.state, &command, T0);
        assert_eq!(applied.outcome, Outcome::Accepted, "{command:?}");
        self.state = applied.state;
    }
}

/// A full device, and the same device with every share but `skip`.
fn device(skip: Option<usize>) -> Cloud {
    let identity = Identity {
        serial: Serial::new(SERIAL).unwrap(),
        region: Region::new(REGION).unwrap(),
        channel_count: CHANNELS,
        verification_code: Text::new(CODE).unwrap(),
    };
    let serial = identity.serial.clone();
    let mut cloud = Cloud {
        state: DeviceState::new(identity).unwrap(),
        seq: 0,
    };
    let proof = bind_proof(CODE.as_bytes(), &serial, &AccountId::new("inst").unwrap());
    cloud.run(
        "inst",
        CommandBody::Bind {
            role: BindRole::Installer,
            proof,
        },
    );
    let timed = Some(Grant {
        validity: window(0),
    });
    cloud.run(
        "alice",
        CommandBody::Handover {
            installer_grants: InstallerGrants {
                site_info: timed,
                configuration: Some(Grant { validity: None }),
                live_view: timed,
                playback: timed,
                may_disable_cloud: true,
            },
        },
    );
    for i in (0..MAX_SHARES).filter(|i| Some(*i) != skip) {
        cloud.run("alice", share(i));
    }
    cloud
}

fn bench_decide(c: &mut Criterion) {
    let state = device(None).state;
    assert_eq!(state.access.shares.len(), MAX_SHARES);
    let last = cloud(&user(MAX_SHARES - 1));
    let owner = cloud("alice");
    let unknown = cloud("mallory");
    // The last share is odd: odd channels and 256.
    let cases: [(&str, &Principal, Action, Option<u16>, Decision); 4] = [
        (
            "shared_last_share_allow",
            &last,
            Action::LiveView,
            Some(CHANNELS - 1),
            Decision::Allow,
        ),
        (
            "shared_channel_out_of_scope_deny",
            &last,
            Action::LiveView,
            Some(2),
            Decision::Deny(protocol::Reason::ChannelOutOfScope),
        ),
        (
            "owner_allow",
            &owner,
            Action::LiveView,
            Some(CHANNELS),
            Decision::Allow,
        ),
        (
            "unknown_account_deny",
            &unknown,
            Action::LiveView,
            Some(1),
            Decision::Deny(protocol::Reason::NotAPrincipal),
        ),
    ];
    let mut group = c.benchmark_group("decide");
    for (name, principal, action, channel, expected) in cases {
        assert_eq!(decide(&state, principal, action, channel, NOW), expected);
        group.bench_function(name, |b| {
            b.iter(|| {
                decide(
                    black_box(&state),
                    black_box(principal),
                    black_box(action),
                    black_box(channel),
                    black_box(NOW),
                )
            })
        });
    }
    group.finish();
}

fn bench_apply(c: &mut Criterion) {
    // One short of full: the middle share is missing, so the Share command
    // inserts in the middle of the list.
    let missing = MAX_SHARES / 2;
    let mut cloud = device(Some(missing));
    assert_eq!(cloud.state.access.shares.len(), MAX_SHARES - 1);
    let command = cloud.command("alice", share(missing));
    let state = cloud.state;
    let applied = apply(&state, &command, NOW);
    assert_eq!(applied.outcome, Outcome::Accepted);
    assert_eq!(applied.state.access.shares.len(), MAX_SHARES);

    let mut group = c.benchmark_group("apply");
    group.bench_function("share_into_full_minus_one", |b| {
        b.iter(|| apply(black_box(&state), black_box(&command), black_box(NOW)))
    });
    group.bench_function("share_into_full_minus_one_then_encode", |b| {
        b.iter(|| {
            let applied = apply(black_box(&state), black_box(&command), black_box(NOW));
            postcard::to_allocvec(&applied.state).unwrap()
        })
    });
    group.finish();
}

fn bench_postcard(c: &mut Criterion) {
    let state = device(None).state;
    let bytes = postcard::to_allocvec(&state).unwrap();
    assert_eq!(postcard::from_bytes::<DeviceState>(&bytes).unwrap(), state);
    println!("full state: {} bytes encoded", bytes.len());

    let mut group = c.benchmark_group("postcard");
    group.bench_function("encode_full_state", |b| {
        b.iter(|| postcard::to_allocvec(black_box(&state)).unwrap())
    });
    group.bench_function("decode_full_state", |b| {
        b.iter(|| postcard::from_bytes::<DeviceState>(black_box(&bytes)).unwrap())
    });
    group.bench_function("encode_decode_full_state", |b| {
        b.iter(|| {
            let bytes = postcard::to_allocvec(black_box(&state)).unwrap();
            postcard::from_bytes::<DeviceState>(&bytes).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_decide, bench_apply, bench_postcard);
criterion_main!(benches);
