//! `hc_agent::core::decide` performs no heap allocation: the decision only
//! borrows the state. Proven with a counting global allocator (this test
//! binary only) over a full access list: `MAX_SHARES` shares on a
//! `MAX_CHANNELS`-channel device, every share with a channel list of more
//! than a hundred channels and a validity window, and a handed-over
//! installer with timed grants. Covered: the owner, shared users (first,
//! middle and last share), the installer, local users and unknown accounts,
//! both allowed and denied, on the full list and with the cloud service or
//! platform access off.
//!
//! Only allocations made by the measuring thread while it measures are
//! counted, so the test harness's own threads cannot pollute the count.
//! There is a single test in this binary all the same.
//!
//! Run: `cargo test -p hc-agent --test decide_allocations`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use hc_agent::core::{decide, set_platform_access};
use hc_protocol::access::{Action, Decision, LocalLevel, Principal};
use hc_protocol::limits::MAX_SHARES;
use hc_protocol::{AccountId, CommandBody, InstallerGrants, Reason};
use hc_testkit::fixture::*;

// ---- the counting allocator ----

struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread's allocations are being counted. Const-initialised
    /// and without a destructor, so reading it never allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counting only touches an atomic and a const thread-local.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Runs `f` and returns how many heap allocations this thread made in it.
fn allocations_in<R>(f: impl FnOnce() -> R) -> (usize, R) {
    COUNTING.with(|c| c.set(true));
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let result = f();
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    COUNTING.with(|c| c.set(false));
    (after - before, result)
}

// ---- the full access list ----

const ALL_CHANNELS: u16 = FULL_CHANNELS;
/// Shares and timed grants run from `T0 - 1000` to `END` (plus the index).
const END: u64 = T0 + 100_000;
const NOW: u64 = T0 + 10;

/// A 256-channel device owned by alice, handed over from "inst" with timed
/// grants (but no playback) and the cloud-switch flag, shared with
/// `MAX_SHARES` accounts, all reached through commands. Share `i` covers
/// the channels of its index's parity, plus channel 256: 128 or 129
/// channels.
fn full_device() -> Device {
    let grants = InstallerGrants {
        playback: None,
        ..timed_grants(window(T0 - 1000, END))
    };
    let d = Device::full(grants, parity_shares(|i| window(T0 - 1000, END + i as u64)));
    assert_eq!(d.state.access.shares.len(), MAX_SHARES);
    assert_eq!(d.state.identity.channel_count, ALL_CHANNELS);
    d
}

struct Case {
    what: &'static str,
    state: usize,
    principal: Principal,
    action: Action,
    channel: Option<u16>,
    now: u64,
    expected: Decision,
}

fn id(s: &str) -> Principal {
    Principal::Cloud(AccountId::new(s).unwrap())
}

/// (what, state, principal, action, channel, now, expected).
type Row = (
    &'static str,
    usize,
    Principal,
    Action,
    Option<u16>,
    u64,
    Decision,
);

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use Decision::{Allow, Deny};
    let first = user(0);
    let middle = user(MAX_SHARES / 2);
    let last = user(MAX_SHARES - 1);
    // (what, state, principal, action, channel, now, expected); state 0 is
    // the full list, 1 the same with the cloud service off, 2 with platform
    // access off.
    let table: Vec<Row> = vec![
        ("owner live view, last channel", 0, id("alice"), Action::LiveView, Some(ALL_CHANNELS), NOW, Allow),
        ("owner config write", 0, id("alice"), Action::ConfigWrite, None, NOW, Allow),
        ("owner share management", 0, id("alice"), Action::ShareManagement, None, NOW, Allow),
        ("owner cloud switch", 0, id("alice"), Action::CloudServiceSwitch, None, NOW, Deny(Reason::ActionNotGranted)),
        ("owner channel 257", 0, id("alice"), Action::LiveView, Some(ALL_CHANNELS + 1), NOW, Deny(Reason::NoSuchChannel)),
        ("owner, cloud service off", 1, id("alice"), Action::LiveView, Some(1), NOW, Deny(Reason::CloudServiceDisabled)),
        ("owner, platform access off", 2, id("alice"), Action::LiveView, Some(1), NOW, Deny(Reason::PlatformAccessOff)),
        ("first share hit", 0, id(&first), Action::LiveView, Some(2), NOW, Allow),
        ("first share out of scope", 0, id(&first), Action::LiveView, Some(1), NOW, Deny(Reason::ChannelOutOfScope)),
        ("first share not granted", 0, id(&first), Action::Ptz, Some(2), NOW, Deny(Reason::ActionNotGranted)),
        ("middle share hit", 0, id(&middle), Action::Playback, Some(ALL_CHANNELS), NOW, Allow),
        ("middle share device-level", 0, id(&middle), Action::ConfigRead, None, NOW, Allow),
        ("middle share not granted", 0, id(&middle), Action::ConfigWrite, None, NOW, Deny(Reason::ActionNotGranted)),
        ("last share hit", 0, id(&last), Action::LiveView, Some(ALL_CHANNELS - 1), NOW, Allow),
        ("last share out of scope", 0, id(&last), Action::LiveView, Some(2), NOW, Deny(Reason::ChannelOutOfScope)),
        ("last share expired", 0, id(&last), Action::LiveView, Some(1), END + 1_000, Deny(Reason::Expired)),
        ("last share, clock behind the floor", 0, id(&last), Action::LiveView, Some(1), T0 - 500, Deny(Reason::ClockNotTrusted)),
        ("last share, no such channel", 0, id(&last), Action::LiveView, Some(0), NOW, Deny(Reason::NoSuchChannel)),
        ("last share, cloud service off", 1, id(&last), Action::LiveView, Some(1), NOW, Deny(Reason::CloudServiceDisabled)),
        ("installer live view", 0, id("inst"), Action::LiveView, Some(ALL_CHANNELS), NOW, Allow),
        ("installer config read", 0, id("inst"), Action::ConfigRead, None, NOW, Allow),
        ("installer cloud switch", 0, id("inst"), Action::CloudServiceSwitch, None, NOW, Allow),
        ("installer, cloud service off", 1, id("inst"), Action::CloudServiceSwitch, None, NOW, Allow),
        ("installer playback not granted", 0, id("inst"), Action::Playback, Some(1), NOW, Deny(Reason::ActionNotGranted)),
        ("installer shares", 0, id("inst"), Action::ShareManagement, None, NOW, Deny(Reason::ActionNotGranted)),
        ("installer live view expired", 0, id("inst"), Action::LiveView, Some(1), END, Deny(Reason::Expired)),
        ("local admin config write", 0, Principal::Local(LocalLevel::Admin), Action::ConfigWrite, None, NOW, Allow),
        ("local admin, platform access off", 2, Principal::Local(LocalLevel::Admin), Action::PlatformAccessSwitch, None, NOW, Allow),
        ("local admin shares", 0, Principal::Local(LocalLevel::Admin), Action::ShareManagement, None, NOW, Deny(Reason::ActionNotGranted)),
        ("local operator ptz", 0, Principal::Local(LocalLevel::Operator), Action::Ptz, Some(5), NOW, Allow),
        ("local guest ptz", 0, Principal::Local(LocalLevel::Guest), Action::Ptz, Some(5), NOW, Deny(Reason::ActionNotGranted)),
        ("local guest channel 0", 0, Principal::Local(LocalLevel::Guest), Action::LiveView, Some(0), NOW, Deny(Reason::NoSuchChannel)),
        ("unknown account", 0, id("mallory"), Action::LiveView, Some(1), NOW, Deny(Reason::NotAPrincipal)),
        ("unknown, sorts before every share", 0, id("a"), Action::ConfigRead, None, NOW, Deny(Reason::NotAPrincipal)),
        ("unknown, sorts between shares", 0, id("user031x"), Action::LiveView, Some(1), NOW, Deny(Reason::NotAPrincipal)),
        ("unknown, sorts after every share", 0, id("zzz"), Action::LiveView, Some(1), NOW, Deny(Reason::NotAPrincipal)),
        ("unknown, longest id", 0, id(&"u".repeat(64)), Action::LiveView, Some(1), NOW, Deny(Reason::NotAPrincipal)),
    ];
    table
        .into_iter()
        .map(|(what, state, principal, action, channel, now, expected)| Case {
            what,
            state,
            principal,
            action,
            channel,
            now,
            expected,
        })
        .collect()
}

#[test]
fn decide_performs_no_heap_allocation_per_decision() {
    // Everything is built before counting starts.
    let mut d = full_device();
    let full = d.state.clone();
    d.expect_ok("inst", CommandBody::SetCloudService { enabled: false });
    let cloud_off = d.state.clone();
    let (result, _) = set_platform_access(&full, LocalLevel::Admin, true, false, NOW);
    let platform_off = result.unwrap().0;
    let states = [full, cloud_off, platform_off];
    let cases = cases();
    const ROUNDS: usize = 3;
    let mut counts: Vec<usize> = Vec::with_capacity(cases.len() * ROUNDS);
    let mut decisions: Vec<Decision> = Vec::with_capacity(cases.len() * ROUNDS);

    // The counter is live: an allocation on this thread is seen.
    let (seen, boxed) = allocations_in(|| Box::new(black_box(7u64)));
    assert!(seen >= 1, "the counting allocator saw no allocation");
    drop(boxed);

    for _ in 0..ROUNDS {
        for case in &cases {
            let (count, decision) = allocations_in(|| {
                decide(
                    black_box(&states[case.state]),
                    black_box(&case.principal),
                    black_box(case.action),
                    black_box(case.channel),
                    black_box(case.now),
                )
            });
            // Within capacity: these pushes do not allocate.
            counts.push(count);
            decisions.push(decision);
        }
    }

    for (i, (count, decision)) in counts.iter().zip(&decisions).enumerate() {
        let case = &cases[i % cases.len()];
        assert_eq!(
            *decision, case.expected,
            "{}: the decision is not the one expected",
            case.what
        );
        assert_eq!(*count, 0, "{}: decide allocated {count} times", case.what);
    }
    assert!(decisions.iter().any(|d| d.is_allow()));
    assert!(decisions.iter().any(|d| !d.is_allow()));
}
