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

use criterion::{criterion_group, criterion_main, Criterion};
use hc_agent::core::{apply, decide, DeviceState};
use hc_protocol::access::{Action, Decision, Principal};
use hc_protocol::limits::MAX_SHARES;
use hc_protocol::{CommandBody, Outcome};
use hc_testkit::fixture::{
    account, cloud, parity_share, timed_grants, user, window, Device, FULL_CHANNELS as CHANNELS, T0,
};

const NOW: u64 = T0 + 10;

/// Share `i`: channels of the index's parity plus channel 256, valid from
/// `T0 - 1000` to `T0 + 100_000 + i`.
fn share(i: usize) -> CommandBody {
    parity_share(i, window(T0 - 1_000, T0 + 100_000 + i as u64))
}

/// A full device, and the same device with every share but `skip`.
fn device(skip: Option<usize>) -> Device {
    Device::full(
        timed_grants(window(T0 - 1_000, T0 + 100_000)),
        (0..MAX_SHARES).filter(|i| Some(*i) != skip).map(share),
    )
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
            Decision::Deny(hc_protocol::Reason::ChannelOutOfScope),
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
            Decision::Deny(hc_protocol::Reason::NotAPrincipal),
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
    let mut d = device(Some(missing));
    assert_eq!(d.state.access.shares.len(), MAX_SHARES - 1);
    let command = d.command(account("alice"), share(missing));
    let state = d.state;
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
