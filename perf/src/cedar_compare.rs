//! Access decisions: `hc_agent::core::decide` against the `cedar-policy` crate
//! evaluating the same access list written as Cedar policies.
//!
//! 1. Builds a full device state through `apply`, as the cloud would: a
//!    256-channel recorder added by an installer and handed over to the
//!    owner (installer grants: site information, configuration, live view,
//!    playback, with validity windows, and the "may disable the cloud
//!    service" flag), then `MAX_SHARES` = 64 shares with different
//!    permission sets, channel scopes (all channels, or lists of 64 to 129
//!    channels) and validity windows (some without, some not yet valid,
//!    some expiring early).
//! 2. Translates that state into a Cedar policy set and entity store
//!    ([`to_cedar`]): one `permit` per role and kind of action, channels as
//!    entities under the device and under one scope entity per share, the
//!    trusted-time floor and both switches in the request context.
//! 3. Asks both engines every request of a grid (every principal: owner,
//!    installer, 64 shared users, an unknown account, the three local
//!    levels; every action; channels none, 0, 1, 2, 128, 255, 256, 257;
//!    times before the trusted-time floor, now, after the early windows and
//!    after all windows) on the state as it is, with the cloud service off
//!    and with platform access off, and requires the same Allow/Deny from
//!    both. Any disagreement is printed and the program exits with 1.
//! 4. Times both on the "now" requests of the normal state: each request is
//!    repeated, the time per decision taken, and the median over requests
//!    reported. Cedar gets its requests prebuilt (the evaluation alone); the
//!    cost of building a Cedar request from the agent's inputs is reported
//!    separately.
//!
//! Output: markdown table rows on stdout (for perf/run.sh), details on
//! stderr. Run: `cargo run --release --manifest-path perf/Cargo.toml --bin
//! cedar-compare`.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hint::black_box;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Instant;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityUid, PolicySet,
    Request, RestrictedExpression,
};
use hc_agent::core::{decide, DeviceState};
use hc_protocol::access::{Action, LocalLevel, Principal};
use hc_protocol::limits::MAX_SHARES;
use hc_protocol::messages::Binding;
use hc_protocol::{
    AccountId, ChannelScope, ChannelSet, CommandBody, Grant, InstallerGrants, Permissions,
    ShareEntry, Validity,
};
use hc_testkit::fixture::{account, parity_channels, user, Device, FULL_CHANNELS, T0};

const NOW: u64 = T0 + 10;
const CHANNELS: u16 = FULL_CHANNELS;
/// How often each timed request is repeated per engine.
const AGENT_REPS: u32 = 200;
const CEDAR_REPS: u32 = 5;

// ---------------------------------------------------------------- the state

/// Share `i`: a mix of what owners hand out.
fn share(i: usize) -> CommandBody {
    use Action::*;
    let permissions: &[Action] = match i % 4 {
        0 => &[LiveView, Playback, AlarmNotifications, ConfigRead],
        1 => &[LiveView],
        2 => &[LiveView, Playback, Ptz, TwoWayAudio],
        _ => &[Playback, AlarmNotifications, ConfigRead, ConfigWrite],
    };
    let channels = match i % 5 {
        0 => ChannelScope::All,
        // The index's parity, plus the last channel: 128 or 129.
        1 | 2 => ChannelScope::Only(parity_channels(i)),
        _ => {
            // A block of 64 channels that moves with the index.
            let start = (i as u16 * 7) % (CHANNELS - 64) + 1;
            let mut set = ChannelSet::EMPTY;
            for c in start..start + 64 {
                set.insert(c);
            }
            ChannelScope::Only(set)
        }
    };
    let validity = match i % 6 {
        0 => None,
        1 => Some(Validity {
            // Not valid yet at NOW.
            not_before: T0 + 50_000,
            not_after: T0 + 500_000,
        }),
        2 => Some(Validity {
            // Expires early.
            not_before: T0 - 1_000,
            not_after: T0 + 1_000 + i as u64,
        }),
        _ => Some(Validity {
            not_before: T0 - 1_000,
            not_after: T0 + 100_000 + i as u64,
        }),
    };
    CommandBody::Share {
        account: account(&user(i)),
        permissions: Permissions::of(permissions),
        channels,
        validity,
    }
}

/// The full device: handed over from "inst" to "alice", 64 shares.
fn full_state() -> DeviceState {
    let window = |end: u64| {
        Some(Grant {
            validity: Some(Validity {
                not_before: T0 - 1_000,
                not_after: end,
            }),
        })
    };
    let grants = InstallerGrants {
        site_info: window(T0 + 200_000),
        configuration: Some(Grant { validity: None }),
        live_view: window(T0 + 1_000),
        playback: window(T0 + 200_000),
        may_disable_cloud: true,
    };
    let device = Device::full(grants, (0..MAX_SHARES).map(share));
    assert_eq!(device.state.access.shares.len(), MAX_SHARES);
    device.state
}

// ------------------------------------------------------- the Cedar version

/// Every action but `excluded`.
fn actions_except(excluded: &[Action]) -> Vec<Action> {
    Action::ALL
        .iter()
        .copied()
        .filter(|a| !excluded.contains(a))
        .collect()
}

/// What the owner may do through the cloud (as `decide` has it).
fn owner_actions() -> Vec<Action> {
    actions_except(&[Action::CloudServiceSwitch, Action::PlatformAccessSwitch])
}

/// What the installer may do before handover.
fn site_installer_actions() -> Vec<Action> {
    actions_except(&[
        Action::ShareManagement,
        Action::InstallerManagement,
        Action::PlatformAccessSwitch,
    ])
}

fn actions_of(permissions: Permissions) -> Vec<Action> {
    Action::ALL
        .iter()
        .copied()
        .filter(|a| permissions.contains(*a))
        .collect()
}

fn cedar_long(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `when` conditions of a validity window: the clock must be trusted and
/// inside the window (`not_before <= now < not_after`).
fn window_condition(validity: Option<Validity>) -> Option<String> {
    validity.map(|v| {
        format!(
            "context.now >= context.floor && context.now >= {} && context.now < {}",
            cedar_long(v.not_before),
            cedar_long(v.not_after)
        )
    })
}

/// Two `permit`s for one principal: channel-scoped actions on channels in
/// `channel_resource`, the other actions on the device.
fn permits(
    out: &mut String,
    principal: &str,
    actions: &[Action],
    channel_resource: &str,
    device: &str,
    conditions: &[String],
) {
    let when = if conditions.is_empty() {
        String::new()
    } else {
        format!(" when {{ {} }}", conditions.join(" && "))
    };
    let resources = [
        (true, format!("resource {channel_resource}")),
        (false, format!("resource == {device}")),
    ];
    for (scoped, resource) in resources {
        let listed: Vec<String> = actions
            .iter()
            .filter(|a| a.is_channel_scoped() == scoped)
            .map(|a| format!("Action::\"{}\"", a.name()))
            .collect();
        if !listed.is_empty() {
            let _ = writeln!(
                out,
                "permit(principal == {principal}, action in [{}], {resource}){when};",
                listed.join(", ")
            );
        }
    }
}

fn scope_uid(account: &str) -> String {
    format!("Scope::\"{account}\"")
}

/// The device's access list as Cedar policies and entities.
///
/// - Principals: `User::"<account>"` (cloud accounts), `Local::"<level>"`.
/// - Resources: `Device::"<serial>"` for actions that are not about a
///   channel; `Channel::"<n>"` for the others. Channels `1..=channel_count`
///   are entities whose parents are the device and the `Scope::"<account>"`
///   of every share whose channel list holds them; a channel number the
///   device does not have is no entity, so it is in nothing.
/// - Context: `now`, `floor` (the trusted-time floor), `cloud_service`,
///   `platform_access` (the switches), supplied by the caller.
pub fn to_cedar(state: &DeviceState) -> (PolicySet, Entities) {
    let device = format!("Device::\"{}\"", state.identity.serial.as_str());
    let any_channel = format!("is Channel in {device}");
    let mut text = String::new();
    // Platform access off: no cloud principal gets anything.
    text.push_str(
        "forbid(principal is User, action, resource) unless { context.platform_access };\n",
    );
    let cloud_on = "context.cloud_service".to_string();
    match &state.access.binding {
        Binding::Unbound => {}
        Binding::InstallerManaged { installer } => {
            let principal = format!("User::\"{}\"", installer.id.as_str());
            permits(
                &mut text,
                &principal,
                &site_installer_actions(),
                &any_channel,
                &device,
                &[],
            );
        }
        Binding::Owned {
            owner,
            installer,
            installer_grants,
        } => {
            let principal = format!("User::\"{}\"", owner.id.as_str());
            permits(
                &mut text,
                &principal,
                &owner_actions(),
                &any_channel,
                &device,
                std::slice::from_ref(&cloud_on),
            );
            if let Some(installer) = installer {
                let principal = format!("User::\"{}\"", installer.id.as_str());
                let grants: [(&[Action], Option<Grant>); 4] = [
                    (&[Action::SiteInfoManagement], installer_grants.site_info),
                    (
                        &[Action::ConfigRead, Action::ConfigWrite],
                        installer_grants.configuration,
                    ),
                    (&[Action::LiveView], installer_grants.live_view),
                    (&[Action::Playback], installer_grants.playback),
                ];
                for (actions, grant) in grants {
                    if let Some(grant) = grant {
                        let conditions: Vec<String> =
                            window_condition(grant.validity).into_iter().collect();
                        permits(
                            &mut text,
                            &principal,
                            actions,
                            &any_channel,
                            &device,
                            &conditions,
                        );
                    }
                }
                if installer_grants.may_disable_cloud {
                    permits(
                        &mut text,
                        &principal,
                        &[Action::CloudServiceSwitch, Action::Unbind],
                        &any_channel,
                        &device,
                        &[],
                    );
                }
            }
            for share in state.access.shares.iter() {
                let ShareEntry {
                    account,
                    permissions,
                    channels,
                    validity,
                } = share;
                let principal = format!("User::\"{}\"", account.id.as_str());
                let resource = match channels {
                    ChannelScope::All => any_channel.clone(),
                    ChannelScope::Only(_) => format!("in {}", scope_uid(account.id.as_str())),
                };
                let mut conditions = vec![cloud_on.clone()];
                conditions.extend(window_condition(*validity));
                permits(
                    &mut text,
                    &principal,
                    &actions_of(*permissions),
                    &resource,
                    &device,
                    &conditions,
                );
            }
        }
    }
    for level in [LocalLevel::Admin, LocalLevel::Operator, LocalLevel::Guest] {
        let principal = format!("Local::\"{level:?}\"");
        permits(
            &mut text,
            &principal,
            &actions_of(level.permissions()),
            &any_channel,
            &device,
            &[],
        );
    }
    let policies = PolicySet::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    let device_uid = EntityUid::from_str(&device).unwrap();
    let mut entities = vec![Entity::new_no_attrs(device_uid.clone(), HashSet::new())];
    let mut scopes = HashSet::new();
    for c in 1..=state.identity.channel_count {
        let mut parents = HashSet::from([device_uid.clone()]);
        for share in state.access.shares.iter() {
            if let ChannelScope::Only(set) = share.channels {
                let scope = EntityUid::from_str(&scope_uid(share.account.id.as_str())).unwrap();
                scopes.insert(scope.clone());
                if set.contains(c) {
                    parents.insert(scope);
                }
            }
        }
        entities.push(Entity::new_no_attrs(
            EntityUid::from_str(&format!("Channel::\"{c}\"")).unwrap(),
            parents,
        ));
    }
    for scope in scopes {
        entities.push(Entity::new_no_attrs(scope, HashSet::new()));
    }
    let entities = Entities::from_entities(entities, None).unwrap();
    (policies, entities)
}

/// The Cedar request for the agent's inputs.
fn cedar_request(
    state: &DeviceState,
    principal: &Principal,
    action: Action,
    channel: Option<u16>,
    now: u64,
) -> Request {
    let principal = match principal {
        Principal::Cloud(account) => format!("User::\"{}\"", account.as_str()),
        Principal::Local(level) => format!("Local::\"{level:?}\""),
    };
    let resource = match channel {
        Some(c) if action.is_channel_scoped() => format!("Channel::\"{c}\""),
        // A channel action without a channel names the device, where no
        // channel-scoped permit applies.
        _ => format!("Device::\"{}\"", state.identity.serial.as_str()),
    };
    let context = Context::from_pairs([
        (
            "now".to_string(),
            RestrictedExpression::new_long(cedar_long(now)),
        ),
        (
            "floor".to_string(),
            RestrictedExpression::new_long(cedar_long(state.clock.floor())),
        ),
        (
            "cloud_service".to_string(),
            RestrictedExpression::new_bool(state.access.cloud_service),
        ),
        (
            "platform_access".to_string(),
            RestrictedExpression::new_bool(state.access.platform_access),
        ),
    ])
    .unwrap();
    Request::new(
        EntityUid::from_str(&principal).unwrap(),
        EntityUid::from_str(&format!("Action::\"{}\"", action.name())).unwrap(),
        EntityUid::from_str(&resource).unwrap(),
        context,
        None,
    )
    .unwrap()
}

// ------------------------------------------------------------ the requests

#[derive(Clone)]
struct Ask {
    class: &'static str,
    principal: Principal,
    action: Action,
    channel: Option<u16>,
    now: u64,
}

fn grid(times: &[u64]) -> Vec<Ask> {
    let cloud = |id: &str| Principal::Cloud(AccountId::new(id).unwrap());
    let mut principals = vec![("owner", cloud("alice")), ("installer", cloud("inst"))];
    for i in 0..MAX_SHARES {
        principals.push(("shared", cloud(&user(i))));
    }
    principals.push(("unknown", cloud("mallory")));
    for level in [LocalLevel::Admin, LocalLevel::Operator, LocalLevel::Guest] {
        principals.push(("local", Principal::Local(level)));
    }
    let mut out = Vec::new();
    for &now in times {
        for (class, principal) in &principals {
            for &action in Action::ALL {
                let channels: &[Option<u16>] = if action.is_channel_scoped() {
                    &[
                        None,
                        Some(0),
                        Some(1),
                        Some(2),
                        Some(128),
                        Some(255),
                        Some(256),
                        Some(257),
                    ]
                } else {
                    &[None, Some(1)]
                };
                for &channel in channels {
                    out.push(Ask {
                        class,
                        principal: principal.clone(),
                        action,
                        channel,
                        now,
                    });
                }
            }
        }
    }
    out
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn main() -> ExitCode {
    let started = Instant::now();
    let state = full_state();
    let authorizer = Authorizer::new();

    // ---- agreement on every request, three device states
    let times = [T0 - 1, NOW, T0 + 1_050, T0 + 1_000_000];
    let asks = grid(&times);
    let mut cloud_off = state.clone();
    cloud_off.access.cloud_service = false;
    let mut platform_off = state.clone();
    platform_off.access.platform_access = false;
    let mut agreements = 0usize;
    let mut allows = 0usize;
    let mut disagreements = Vec::new();
    let mut policy_count = 0;
    for (name, s) in [
        ("as built", &state),
        ("cloud service off", &cloud_off),
        ("platform access off", &platform_off),
    ] {
        let (policies, entities) = to_cedar(s);
        policy_count = policies.policies().count();
        for ask in &asks {
            let ours = decide(s, &ask.principal, ask.action, ask.channel, ask.now);
            let request = cedar_request(s, &ask.principal, ask.action, ask.channel, ask.now);
            let theirs = authorizer
                .is_authorized(&request, &policies, &entities)
                .decision();
            if ours.is_allow() == (theirs == CedarDecision::Allow) {
                agreements += 1;
                allows += usize::from(ours.is_allow());
            } else {
                disagreements.push(format!(
                    "{name}: {:?} {:?} channel {:?} at {}: agent {ours:?}, cedar {theirs:?}",
                    ask.principal, ask.action, ask.channel, ask.now
                ));
            }
        }
    }
    let total = asks.len() * 3;
    eprintln!(
        "cedar-compare: {policy_count} Cedar policies, {} channel entities; {agreements}/{total} requests agree ({allows} allow, {} deny)",
        state.identity.channel_count,
        agreements - allows
    );
    if !disagreements.is_empty() {
        eprintln!(
            "DISAGREEMENT between hc_agent::core::decide and cedar-policy on {} requests:",
            disagreements.len()
        );
        for d in disagreements.iter().take(40) {
            eprintln!("  {d}");
        }
        println!(
            "| 1 | Access decisions agree (Allow/Deny) | | | **{} of {total} DISAGREE** | | all | **no** |",
            disagreements.len()
        );
        return ExitCode::FAILURE;
    }

    // ---- timing: the "now" requests on the state as built
    let (policies, entities) = to_cedar(&state);
    let timed: Vec<Ask> = grid(&[NOW]);
    let requests: Vec<Request> = timed
        .iter()
        .map(|a| cedar_request(&state, &a.principal, a.action, a.channel, a.now))
        .collect();
    // Warm up both.
    for (ask, request) in timed.iter().zip(&requests) {
        black_box(decide(
            &state,
            &ask.principal,
            ask.action,
            ask.channel,
            ask.now,
        ));
        black_box(authorizer.is_authorized(request, &policies, &entities));
    }
    let mut agent_ns = Vec::with_capacity(timed.len());
    let mut cedar_ns = Vec::with_capacity(timed.len());
    let mut build_ns = Vec::with_capacity(timed.len());
    let mut per_class: HashMap<&str, (Vec<f64>, Vec<f64>)> = HashMap::new();
    for (ask, request) in timed.iter().zip(&requests) {
        let t = Instant::now();
        for _ in 0..AGENT_REPS {
            black_box(decide(
                black_box(&state),
                black_box(&ask.principal),
                black_box(ask.action),
                black_box(ask.channel),
                black_box(ask.now),
            ));
        }
        let a = t.elapsed().as_nanos() as f64 / f64::from(AGENT_REPS);
        let t = Instant::now();
        for _ in 0..CEDAR_REPS {
            black_box(authorizer.is_authorized(black_box(request), &policies, &entities));
        }
        let c = t.elapsed().as_nanos() as f64 / f64::from(CEDAR_REPS);
        let t = Instant::now();
        for _ in 0..CEDAR_REPS {
            black_box(cedar_request(
                &state,
                black_box(&ask.principal),
                ask.action,
                ask.channel,
                ask.now,
            ));
        }
        let b = t.elapsed().as_nanos() as f64 / f64::from(CEDAR_REPS);
        agent_ns.push(a);
        cedar_ns.push(c);
        build_ns.push(b);
        let entry = per_class.entry(ask.class).or_default();
        entry.0.push(a);
        entry.1.push(c);
    }
    let agent = median(&mut agent_ns);
    let cedar = median(&mut cedar_ns);
    let build = median(&mut build_ns);
    let ratio = cedar / agent;
    let met = if ratio >= 100.0 { "yes" } else { "**no**" };
    println!(
        "| 1 | Access decision, median per decision ({} requests, full list) | {agent:.0} ns | cedar-policy 4.14.1 `is_authorized`, {policy_count} policies | {cedar:.0} ns | {ratio:.0}x faster | ≥100x | {met} |",
        timed.len()
    );
    println!(
        "| 1 | Same Allow/Deny as Cedar (3 device states x {} requests) | {agreements} of {total} agree | | {allows} allow, {} deny | | all | {} |",
        asks.len(),
        agreements - allows,
        if agreements == total { "yes" } else { "**no**" }
    );
    println!(
        "| 1 | Cedar request construction (context + uids), median | | building a Cedar `Request` from the same inputs | {build:.0} ns | (+{:.0}x of `decide`) | | |",
        build / agent
    );
    let mut classes: Vec<_> = per_class.into_iter().collect();
    classes.sort_by_key(|(k, _)| *k);
    for (class, (mut a, mut c)) in classes {
        let (a, c) = (median(&mut a), median(&mut c));
        eprintln!(
            "cedar-compare: {class:<9} median agent {a:>7.1} ns  cedar {c:>9.0} ns  ratio {:>6.0}x",
            c / a
        );
    }
    eprintln!(
        "cedar-compare: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
