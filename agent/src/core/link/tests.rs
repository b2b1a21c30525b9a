//! The link driven by hand, without a broker or a socket: every input a
//! driver can give, and what must come out.

use super::*;
use crate::core::backoff::BackoffPolicy;
use hc_protocol::limits::MAX_UNACKED_INBOUND;

const KEEP_ALIVE_MS: u64 = 30_000;
const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Longer than the silence limit, so that the tests of other deadlines
/// never meet a refresh.
const REFRESH_S: u32 = 300;
const REFRESH_MS: u64 = REFRESH_S as u64 * 1000;
/// A draw that makes every backoff delay its bound.
const MAX_RANDOM: u32 = u32::MAX;

fn policy() -> LinkPolicy {
    LinkPolicy {
        connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_MS),
        keep_alive: Duration::from_millis(KEEP_ALIVE_MS),
        close_grace: Duration::from_millis(2_000),
        inflight_window: 32,
        backoff: BackoffPolicy {
            base: Duration::from_millis(1_000),
            cap: Duration::from_millis(120_000),
            stable_after: Duration::from_millis(60_000),
            reconnect_spread: Duration::from_millis(1_000),
        },
        endpoints: 1,
        first_endpoint: 0,
        status_refresh: Duration::from_secs(u64::from(REFRESH_S)),
    }
}

fn online() -> Transmit {
    Transmit::Status {
        online: true,
        refresh_s: REFRESH_S,
    }
}

/// Attempt `attempt` on the persistent session.
fn connect(attempt: u32) -> Transmit {
    Transmit::Connect {
        attempt,
        clean_session: false,
        endpoint: 0,
    }
}

pub(super) fn transmits(link: &mut Link) -> Vec<Transmit> {
    std::iter::from_fn(|| link.poll_transmit()).collect()
}

pub(super) fn events(link: &mut Link) -> Vec<LinkEvent> {
    std::iter::from_fn(|| link.poll_event()).collect()
}

/// A link that started attempt 1 at `now`.
pub(super) fn connecting(now: u64) -> Link {
    let mut link = Link::new(policy(), true, now);
    assert_eq!(link.poll_timeout(), Some(now));
    link.handle_timeout(now, 0);
    assert_eq!(transmits(&mut link), [connect(1)]);
    link
}

/// A link whose attempt 1 was accepted at `now`.
pub(super) fn connected(now: u64) -> Link {
    let mut link = connecting(now);
    link.handle_connack(1, true, 0, now);
    transmits(&mut link);
    events(&mut link);
    link
}

#[test]
fn an_enabled_link_connects_at_once_then_subscribes_and_goes_online() {
    let mut link = connecting(0);
    assert_eq!(link.state(), LinkState::Connecting);
    link.handle_connack(1, false, 0, 40);
    assert_eq!(transmits(&mut link), [Transmit::Subscribe, online()]);
    assert_eq!(
        events(&mut link),
        [LinkEvent::Connected {
            session_present: false
        }]
    );
    assert_eq!(link.state(), LinkState::Connected);
}

#[test]
fn a_disabled_link_does_nothing_until_enabled() {
    let mut link = Link::new(policy(), false, 0);
    assert_eq!(link.poll_timeout(), None);
    link.handle_timeout(1_000_000, 0);
    assert!(transmits(&mut link).is_empty());
    assert_eq!(link.state(), LinkState::Disabled);
    link.set_enabled(true, 5);
    link.handle_timeout(5, 0);
    assert_eq!(transmits(&mut link), [connect(1)]);
}

#[test]
fn a_slow_connack_inside_the_connect_timeout_is_waited_for_not_retried() {
    let mut link = connecting(0);
    assert_eq!(link.poll_timeout(), Some(CONNECT_TIMEOUT_MS));
    // Nothing but the attempt's own deadline ends it: a driver waking
    // early (another timer, a local request) changes nothing.
    for now in (0..CONNECT_TIMEOUT_MS).step_by(250) {
        link.handle_timeout(now, 0);
        assert!(transmits(&mut link).is_empty(), "at {now} ms");
    }
    link.handle_connack(1, false, 0, 9_999);
    assert_eq!(link.state(), LinkState::Connected);
}

#[test]
fn a_connack_timeout_abandons_the_attempt_and_backs_off() {
    let mut link = connecting(0);
    link.handle_timeout(CONNECT_TIMEOUT_MS, MAX_RANDOM);
    assert_eq!(transmits(&mut link), [Transmit::Abort { attempt: 1 }]);
    let retry_in = Duration::from_millis(1_000);
    assert_eq!(
        events(&mut link),
        [LinkEvent::ConnectFailed {
            timed_out: true,
            retry_in
        }]
    );
    assert_eq!(link.poll_timeout(), Some(CONNECT_TIMEOUT_MS + 1_000));
    // The abandoned attempt's late answer is not taken for a connection.
    link.handle_connack(1, false, 0, CONNECT_TIMEOUT_MS + 10);
    assert_eq!(link.state(), LinkState::Connecting);
    assert!(transmits(&mut link).is_empty());
    link.handle_timeout(CONNECT_TIMEOUT_MS + 1_000, 0);
    assert_eq!(transmits(&mut link), [connect(2)]);
}

#[test]
fn silence_for_one_and_a_half_keep_alives_is_a_dead_link() {
    let mut link = connected(0);
    link.handle_incoming(1, 20_000);
    let limit = 20_000 + KEEP_ALIVE_MS * 3 / 2;
    assert_eq!(link.poll_timeout(), Some(limit));
    link.handle_timeout(limit - 1, 0);
    assert!(transmits(&mut link).is_empty());
    link.handle_timeout(limit, MAX_RANDOM);
    assert_eq!(transmits(&mut link), [Transmit::Abort { attempt: 1 }]);
    assert_eq!(
        events(&mut link),
        [LinkEvent::Lost {
            cause: LossCause::Silent,
            retry_in: Duration::from_millis(1_000)
        }]
    );
    assert_eq!(link.state(), LinkState::Connecting);
}

#[test]
fn failed_attempts_back_off_exponentially_to_the_cap_and_a_stable_link_resets_it() {
    let mut link = connecting(0);
    let mut now = 0;
    let mut delays = Vec::new();
    for attempt in 1..=10 {
        link.handle_error(attempt, now, MAX_RANDOM);
        match events(&mut link).as_slice() {
            [LinkEvent::ConnectFailed {
                timed_out: false,
                retry_in,
            }] => delays.push(retry_in.as_millis() as u64),
            other => panic!("{other:?}"),
        }
        now = link.poll_timeout().unwrap();
        link.handle_timeout(now, 0);
        assert_eq!(transmits(&mut link), [connect(attempt + 1)]);
    }
    assert_eq!(
        delays,
        [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 120_000, 120_000, 120_000]
    );
    // Up for longer than the stable period: the next loss starts over from
    // the reconnect spread.
    link.handle_connack(11, true, 0, now);
    link.handle_incoming(11, now + 60_000);
    link.handle_error(11, now + 60_000, MAX_RANDOM);
    let lost = events(&mut link);
    assert_eq!(
        lost.last(),
        Some(&LinkEvent::Lost {
            cause: LossCause::Error,
            retry_in: Duration::from_millis(1_000)
        })
    );
}

#[test]
fn what_an_older_attempt_reports_is_ignored() {
    let mut link = connecting(0);
    link.handle_error(1, 0, 0);
    let retry = link.poll_timeout().unwrap();
    link.handle_timeout(retry, 0);
    transmits(&mut link);
    events(&mut link);
    link.handle_error(1, retry + 1, 0);
    link.handle_connack(1, false, 0, retry + 1);
    assert!(events(&mut link).is_empty());
    assert_eq!(link.state(), LinkState::Connecting);
    link.handle_connack(2, false, 0, retry + 2);
    assert_eq!(link.state(), LinkState::Connected);
}

#[test]
fn the_outbox_drains_within_the_inflight_window_and_again_after_a_reconnect() {
    let mut link = connecting(0);
    assert_eq!(link.publish_room(), 0, "nothing is handed while connecting");
    // The client resends 3 publishes of the last connection, then the status.
    link.handle_connack(1, true, 3, 10);
    assert_eq!(link.publish_room(), 30 - 4);
    link.handed(26);
    assert_eq!(link.publish_room(), 0);
    for _ in 0..10 {
        link.handle_written(1);
    }
    link.handle_inflight(1, 10);
    assert_eq!(link.publish_room(), 30 - 20 - 10);
    link.handle_inflight(1, 0);
    assert_eq!(link.publish_room(), 30 - 20);
    // Lost: nothing is handed until the next connection, which starts from
    // what the client holds again.
    link.handle_error(1, 20, 0);
    assert_eq!(link.publish_room(), 0);
    link.handle_timeout(link.poll_timeout().unwrap(), 0);
    link.handle_connack(2, true, 20, 2_000);
    assert_eq!(link.publish_room(), 30 - 21);
}

#[test]
fn owed_acknowledgements_leave_in_order_and_are_forgotten_with_the_connection() {
    let mut link = connected(0);
    for pkid in [7, 8, 9] {
        link.handle_delivery(1, pkid, 5, 0);
    }
    assert_eq!(link.next_puback(), Some(7));
    link.puback_handed();
    assert_eq!(link.next_puback(), Some(8));
    // The broker redelivers unacknowledged messages on the next connection.
    link.handle_error(1, 10, 0);
    assert_eq!(link.next_puback(), None);
    link.handle_timeout(link.poll_timeout().unwrap(), 0);
    link.handle_connack(2, true, 0, 1_000);
    assert_eq!(link.next_puback(), None);
}

#[test]
fn a_broker_exceeding_the_unacknowledged_window_loses_the_connection() {
    let mut link = connected(0);
    for pkid in 0..MAX_UNACKED_INBOUND as u16 {
        link.handle_delivery(1, pkid, 5, 0);
    }
    assert!(transmits(&mut link).is_empty());
    link.handle_delivery(1, 999, 5, 0);
    assert_eq!(transmits(&mut link), [Transmit::Abort { attempt: 1 }]);
    assert!(matches!(
        events(&mut link).as_slice(),
        [LinkEvent::Lost {
            cause: LossCause::TooManyUnacked,
            ..
        }]
    ));
}

#[test]
fn platform_access_off_goes_offline_gracefully_and_on_reconnects_at_once() {
    let mut link = connected(0);
    link.set_enabled(false, 100);
    assert!(!link.is_enabled());
    assert_eq!(
        transmits(&mut link),
        [
            Transmit::Status {
                online: false,
                refresh_s: 0
            },
            Transmit::Disconnect
        ]
    );
    assert_eq!(link.state(), LinkState::Disabled);
    link.handle_disconnect_written(1);
    assert_eq!(transmits(&mut link), [Transmit::Abort { attempt: 1 }]);
    assert_eq!(events(&mut link), [LinkEvent::Closed]);
    assert_eq!(link.poll_timeout(), None);
    link.set_enabled(true, 5_000);
    assert_eq!(link.poll_timeout(), Some(5_000));
    link.handle_timeout(5_000, 0);
    assert_eq!(transmits(&mut link), [connect(2)]);
}

#[test]
fn a_reconnect_disconnects_cleanly_without_going_offline_and_connects_again_at_once() {
    let mut link = connected(0);
    link.reconnect(100);
    assert!(link.is_enabled());
    // No offline status: the device is back at once.
    assert_eq!(transmits(&mut link), [Transmit::Disconnect]);
    link.handle_disconnect_written(1);
    assert_eq!(transmits(&mut link), [Transmit::Abort { attempt: 1 }]);
    assert_eq!(events(&mut link), [LinkEvent::Closed]);
    assert_eq!(link.poll_timeout(), Some(0));
    link.handle_timeout(120, 0);
    assert_eq!(transmits(&mut link), [connect(2)]);

    // Not connected: nothing to do, the next attempt loads the new pair.
    let mut connecting = connecting(0);
    connecting.reconnect(10);
    assert!(transmits(&mut connecting).is_empty());
}

#[test]
fn a_close_whose_disconnect_never_leaves_is_forced_after_the_grace() {
    let mut link = connected(0);
    link.close(100);
    transmits(&mut link);
    assert_eq!(link.poll_timeout(), Some(2_100));
    link.handle_timeout(2_100, 0);
    assert_eq!(transmits(&mut link), [Transmit::Abort { attempt: 1 }]);
    assert!(link.is_stopped());
}

#[test]
fn shutdown_while_connecting_abandons_the_attempt_and_stops() {
    let mut link = connecting(0);
    link.close(50);
    assert_eq!(transmits(&mut link), [Transmit::Abort { attempt: 1 }]);
    assert_eq!(events(&mut link), [LinkEvent::Closed]);
    assert!(link.is_stopped());
    link.set_enabled(true, 60);
    assert!(link.is_stopped(), "a stopped link stays stopped");
}

/// The endpoint attempt `attempt` went to.
fn endpoint_of(transmits: &[Transmit]) -> Option<u8> {
    transmits.iter().find_map(|t| match t {
        Transmit::Connect { endpoint, .. } => Some(*endpoint),
        _ => None,
    })
}

#[test]
fn a_refused_endpoint_fails_over_to_the_next_at_once_and_a_dead_round_backs_off() {
    let three = LinkPolicy {
        endpoints: 3,
        first_endpoint: 2,
        ..policy()
    };
    let mut link = Link::new(three, true, 0);
    link.handle_timeout(0, 0);
    assert_eq!(endpoint_of(&transmits(&mut link)), Some(2), "its own start");
    // Refused: the next endpoint within the failover spread, not the
    // backoff's second.
    link.handle_error(1, 10, MAX_RANDOM);
    let retry = link.poll_timeout().unwrap();
    assert!(retry <= 10 + FAILOVER_SPREAD.as_millis() as u64, "{retry}");
    link.handle_timeout(retry, 0);
    assert_eq!(endpoint_of(&transmits(&mut link)), Some(0));
    // A timed-out attempt fails over too.
    let timed_out = retry + CONNECT_TIMEOUT_MS;
    link.handle_timeout(timed_out, MAX_RANDOM);
    transmits(&mut link);
    let retry = link.poll_timeout().unwrap();
    assert!(
        retry <= timed_out + FAILOVER_SPREAD.as_millis() as u64,
        "{retry}"
    );
    link.handle_timeout(retry, 0);
    assert_eq!(endpoint_of(&transmits(&mut link)), Some(1));
    // All three failed: now the backoff waits (its bound is 1 s).
    link.handle_error(3, retry + 5, MAX_RANDOM);
    events(&mut link);
    assert_eq!(link.poll_timeout(), Some(retry + 5 + 1_000));
    link.handle_timeout(retry + 5 + 1_000, 0);
    assert_eq!(endpoint_of(&transmits(&mut link)), Some(2));
    // Endpoint 2 answers; losing it later retries it first.
    link.handle_connack(4, true, 0, retry + 2_000);
    transmits(&mut link);
    link.handle_error(4, retry + 3_000, 0);
    let again = link.poll_timeout().unwrap();
    link.handle_timeout(again, 0);
    assert_eq!(endpoint_of(&transmits(&mut link)), Some(2));
}

#[test]
fn a_broker_close_waits_out_the_spread_and_a_silent_broker_only_the_base() {
    let spread = Duration::from_millis(10_000);
    let link_with_spread = |now| {
        let mut policy = policy();
        policy.backoff.reconnect_spread = spread;
        let mut link = Link::new(policy, true, now);
        link.handle_timeout(now, 0);
        transmits(&mut link);
        link.handle_connack(1, true, 0, now);
        transmits(&mut link);
        events(&mut link);
        link
    };
    let retry_in = |link: &mut Link| {
        events(link)
            .into_iter()
            .find_map(|e| match e {
                LinkEvent::Lost { cause, retry_in } => Some((cause, retry_in)),
                _ => None,
            })
            .expect("a loss")
    };

    // A broker restart closes every device's connection at once.
    let mut closed = link_with_spread(0);
    closed.handle_closed_by_broker(1, 120_000, MAX_RANDOM);
    assert_eq!(retry_in(&mut closed), (LossCause::ClosedByBroker, spread));

    // Keep-alive unanswered: this device's own loss, back within the base.
    let mut silent = link_with_spread(0);
    silent.handle_incoming(1, 0);
    let deadline = silent.poll_timeout().expect("keep-alive deadline");
    silent.handle_timeout(deadline + KEEP_ALIVE_MS * 2, MAX_RANDOM);
    assert_eq!(
        retry_in(&mut silent),
        (LossCause::Silent, Duration::from_millis(1_000))
    );
}

/// Keeps `link` alive with a packet from the broker every 20 s up to `to`.
fn pinged(link: &mut Link, from: u64, to: u64) {
    for at in (from..to).step_by(20_000) {
        link.handle_incoming(1, at);
        link.handle_timeout(at, 0);
    }
}

#[test]
fn a_connected_link_publishes_the_online_status_again_every_refresh_interval() {
    let mut link = connected(1_000);
    pinged(&mut link, 1_000, 1_000 + REFRESH_MS);
    assert!(transmits(&mut link).is_empty());
    link.handle_incoming(1, 1_000 + REFRESH_MS - 1);
    assert_eq!(link.poll_timeout(), Some(1_000 + REFRESH_MS));
    link.handle_timeout(1_000 + REFRESH_MS - 1, 0);
    assert!(transmits(&mut link).is_empty());
    // A late wake-up refreshes once, and the next interval counts from it.
    link.handle_timeout(1_000 + REFRESH_MS + 500, 0);
    assert_eq!(transmits(&mut link), [online()]);
    assert!(events(&mut link).is_empty());
    link.handle_incoming(1, 1_000 + REFRESH_MS + 500);
    link.handle_timeout(1_000 + REFRESH_MS + 600, 0);
    assert!(transmits(&mut link).is_empty());
    pinged(
        &mut link,
        1_000 + REFRESH_MS + 600,
        1_000 + 2 * REFRESH_MS + 500,
    );
    link.handle_incoming(1, 1_000 + 2 * REFRESH_MS);
    assert_eq!(link.poll_timeout(), Some(1_000 + 2 * REFRESH_MS + 500));
    link.handle_timeout(1_000 + 2 * REFRESH_MS + 500, 0);
    assert_eq!(transmits(&mut link), [online()]);
}

#[test]
fn the_refresh_takes_a_place_in_the_window_until_it_is_written() {
    let mut link = connected(0);
    link.handle_written(1);
    let room = link.publish_room();
    pinged(&mut link, 0, REFRESH_MS);
    link.handle_incoming(1, REFRESH_MS);
    link.handle_timeout(REFRESH_MS, 0);
    assert_eq!(transmits(&mut link), [online()]);
    assert_eq!(link.publish_room(), room - 1);
    link.handle_written(1);
    assert_eq!(link.publish_room(), room);
}

#[test]
fn the_refresh_interval_starts_again_at_every_connect_and_stops_with_the_link() {
    let mut link = connected(0);
    pinged(&mut link, 0, 100_000);
    // Lost at 100 s, back at 101 s: the status of the CONNACK starts the
    // interval.
    link.handle_error(1, 100_000, 0);
    events(&mut link);
    let retry = link.poll_timeout().unwrap();
    assert!(retry < REFRESH_MS, "no refresh while disconnected");
    link.handle_timeout(retry, 0);
    assert_eq!(transmits(&mut link), [connect(2)]);
    link.handle_connack(2, true, 0, retry + 50);
    assert_eq!(transmits(&mut link), [Transmit::Subscribe, online()]);
    for at in (retry + 50..retry + 50 + REFRESH_MS).step_by(20_000) {
        link.handle_incoming(2, at);
        link.handle_timeout(at, 0);
    }
    assert!(transmits(&mut link).is_empty());
    link.handle_incoming(2, retry + 50 + REFRESH_MS);
    link.handle_timeout(retry + 50 + REFRESH_MS, 0);
    assert_eq!(transmits(&mut link), [online()]);
    // Closing: the offline status, and no refresh after it.
    link.close(retry + 60 + REFRESH_MS);
    transmits(&mut link);
    link.handle_disconnect_written(2);
    transmits(&mut link);
    assert_eq!(link.poll_timeout(), None);
}

#[test]
fn a_corrected_clock_publishes_the_status_at_once_and_restarts_the_interval() {
    let mut link = connecting(0);
    // Not connected: nothing to refresh.
    link.refresh_status(10);
    assert!(transmits(&mut link).is_empty());
    link.handle_connack(1, true, 0, 20);
    transmits(&mut link);
    link.refresh_status(5_000);
    assert_eq!(transmits(&mut link), [online()]);
    pinged(&mut link, 5_000, 5_000 + REFRESH_MS);
    link.handle_incoming(1, 5_000 + REFRESH_MS - 10);
    assert_eq!(link.poll_timeout(), Some(5_000 + REFRESH_MS));
}

#[test]
fn a_zero_interval_never_refreshes() {
    let mut link = Link::new(
        LinkPolicy {
            status_refresh: Duration::ZERO,
            ..policy()
        },
        true,
        0,
    );
    link.handle_timeout(0, 0);
    link.handle_connack(1, false, 0, 0);
    assert_eq!(
        transmits(&mut link),
        [
            connect(1),
            Transmit::Subscribe,
            Transmit::Status {
                online: true,
                refresh_s: 0
            }
        ]
    );
    assert_eq!(link.poll_timeout(), Some(KEEP_ALIVE_MS * 3 / 2));
}
