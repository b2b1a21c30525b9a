//! The cloud link's connection state, sans-IO (in the manner of
//! quinn-proto): the driver feeds it what happened on the MQTT connection
//! (`handle_*`), asks it what to do (`poll_transmit`), what to report
//! (`poll_event`) and when to call again (`poll_timeout`). Time is a count
//! of monotonic milliseconds passed in; randomness for the backoff jitter
//! too. It never reads a clock or touches a socket.
//!
//! It owns: whether the link should be up at all (platform access, shutdown),
//! the connection attempt in flight and its deadline, reconnect backoff,
//! half-open detection (silence for 1.5 keep-alive intervals), the
//! refresh of the retained online status (a cloud takes a status not
//! refreshed in time for a device gone, SPEC.md §2.4), the
//! acknowledgements owed to the broker, and how many of our own publishes
//! the MQTT client can take. Every connection attempt has a number; what the
//! driver reports about an older attempt is stale and ignored, so a late
//! answer from an abandoned connection can never be taken for the current
//! one. An attempt ends only by its answer, its error or its own deadline:
//! nothing else cancels it.

use core::time::Duration;

use hc_protocol::local::LinkState;
use heapless::Deque;

use super::backoff::Backoff;
use flow::Flow;
use subscription::Resubscribe;

mod broker_faults;
mod closing;
mod endpoints;
mod flow;
mod outputs;
mod policy;
mod subscription;

pub use endpoints::{Endpoints, FAILOVER_SPREAD};
pub use outputs::{LinkEvent, LossCause, Transmit};
pub use policy::LinkPolicy;
pub use subscription::{resubscribe_delay, RESUBSCRIBE_BASE, RESUBSCRIBE_CAP};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterClose {
    /// Platform access off: wait to be enabled again.
    Disable,
    /// Shutdown: done for good.
    Stop,
    /// Connect again at once (a renewed certificate to use).
    Reconnect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not wanted: platform access is off.
    Disabled,
    /// Next attempt at `until`.
    Waiting { until: u64 },
    /// Attempt in flight; abandoned at `deadline`.
    Connecting { deadline: u64 },
    /// Up; last heard from the broker at `last_incoming`.
    Connected { last_incoming: u64 },
    /// Going offline gracefully; forced at `deadline`.
    Closing { deadline: u64, then: AfterClose },
    /// Shut down.
    Stopped,
}

/// Connections lost in a row to an undecodable packet before the next one
/// starts a clean session.
pub const POISON_STRIKES: u8 = 3;

/// Closes by the broker in a row, each soon after the CONNACK, that make a
/// contested session.
pub const CONTESTED_CLOSES: u8 = 3;
/// "Soon after the CONNACK" for `CONTESTED_CLOSES`.
pub const QUICK_CLOSE: Duration = Duration::from_secs(30);

/// Most transmits one step queues (a connect ends with subscribe and status;
/// a close with status, disconnect and abort).
const TRANSMITS: usize = 4;
/// Most events one step queues.
const EVENTS: usize = 2;

/// The link state machine.
#[derive(Debug)]
pub struct Link {
    policy: LinkPolicy,
    phase: Phase,
    backoff: Backoff,
    attempt: u32,
    transmits: Deque<Transmit, TRANSMITS>,
    events: Deque<LinkEvent, EVENTS>,
    flow: Flow,
    endpoints: Endpoints,
    /// Connections in a row lost to a packet the client could not take.
    poison_strikes: u8,
    /// When the current connection was accepted.
    connected_since: u64,
    /// Connections in a row the broker closed soon after accepting them.
    quick_closes: u8,
    /// A connection with the persistent session was accepted before, so a
    /// CONNACK without a session means the broker lost or gave it away.
    had_session: bool,
    /// When the online status is published again, while connected.
    status_due: u64,
    /// A refused subscription waiting to be asked for again.
    resubscribe: Resubscribe,
}

impl Link {
    /// A link that connects at once if `enabled` (platform access on).
    pub fn new(policy: LinkPolicy, enabled: bool, now: u64) -> Self {
        Link {
            policy,
            phase: if enabled {
                Phase::Waiting { until: now }
            } else {
                Phase::Disabled
            },
            backoff: Backoff::new(policy.backoff),
            attempt: 0,
            transmits: Deque::new(),
            events: Deque::new(),
            flow: Flow::default(),
            endpoints: Endpoints::new(policy.endpoints, policy.first_endpoint),
            poison_strikes: 0,
            connected_since: 0,
            quick_closes: 0,
            had_session: false,
            status_due: 0,
            resubscribe: Resubscribe::default(),
        }
    }

    /// The state as the status reply shows it.
    pub fn state(&self) -> LinkState {
        match self.phase {
            Phase::Connected { .. } => LinkState::Connected,
            Phase::Waiting { .. } | Phase::Connecting { .. } => LinkState::Connecting,
            Phase::Disabled | Phase::Closing { .. } | Phase::Stopped => LinkState::Disabled,
        }
    }

    /// Up, and messages may be handed to the MQTT client.
    pub fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Connected { .. })
    }

    /// Shut down for good (after `close`).
    pub fn is_stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    /// The next thing to do on the connection.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing that happened.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.phase {
            Phase::Waiting { until } => Some(until),
            Phase::Connecting { deadline } | Phase::Closing { deadline, .. } => Some(deadline),
            Phase::Connected { last_incoming } => Some(
                (last_incoming + self.silence_limit_ms())
                    .min(self.status_due)
                    .min(self.resubscribe.due.unwrap_or(u64::MAX)),
            ),
            Phase::Disabled | Phase::Stopped => None,
        }
    }

    fn silence_limit_ms(&self) -> u64 {
        millis(self.policy.keep_alive) * 3 / 2
    }

    /// The refresh interval as the status states it, whole seconds (0: no
    /// refresh).
    fn refresh_s(&self) -> u32 {
        u32::try_from(self.policy.status_refresh.as_secs()).unwrap_or(u32::MAX)
    }

    /// Time has come to `now`: start an attempt, give one up, detect a
    /// silent link, refresh the online status, or subscribe again.
    pub fn handle_timeout(&mut self, now: u64, random: u32) {
        self.resubscribe_if_due(now);
        match self.phase {
            Phase::Waiting { until } if now >= until => {
                self.attempt = self.attempt.wrapping_add(1);
                self.phase = Phase::Connecting {
                    deadline: now + millis(self.policy.connect_timeout),
                };
                // A message that broke the connection again and again
                // would be redelivered forever on the persistent session:
                // give the session up once (the cloud re-sends what it
                // has no acknowledgement for).
                let clean_session = self.poison_strikes >= POISON_STRIKES;
                self.transmit(Transmit::Connect {
                    attempt: self.attempt,
                    clean_session,
                    endpoint: self.endpoints.current(),
                });
            }
            Phase::Connecting { deadline } if now >= deadline => {
                self.transmit(Transmit::Abort {
                    attempt: self.attempt,
                });
                self.connect_failed(true, now, random);
            }
            Phase::Connected { last_incoming }
                if now >= last_incoming + self.silence_limit_ms() =>
            {
                self.transmit(Transmit::Abort {
                    attempt: self.attempt,
                });
                self.lost(LossCause::Silent, now, random);
            }
            Phase::Connected { .. } if now >= self.status_due => self.publish_status(now),
            Phase::Closing { deadline, then } if now >= deadline => self.closed(then),
            _ => {}
        }
    }

    /// The broker accepted attempt `attempt`. `pending_publishes` is what
    /// the MQTT client will send again first (the last connection's
    /// unacknowledged publishes).
    pub fn handle_connack(
        &mut self,
        attempt: u32,
        session_present: bool,
        pending_publishes: usize,
        now: u64,
    ) {
        if !self.current(attempt) || !matches!(self.phase, Phase::Connecting { .. }) {
            return;
        }
        self.phase = Phase::Connected { last_incoming: now };
        self.connected_since = now;
        self.backoff.on_connected(now);
        self.endpoints.on_connected();
        if self.poison_strikes >= POISON_STRIKES {
            // This connection started a clean session (see handle_timeout).
            self.poison_strikes = 0;
            self.event(LinkEvent::SessionDiscarded);
        } else if self.had_session && !session_present {
            self.event(LinkEvent::SessionLost);
        }
        self.had_session = true;
        // The online status goes out with what the last connection left.
        self.flow = Flow::new(pending_publishes);
        self.reset_resubscribe();
        self.transmit(Transmit::Subscribe);
        self.publish_status(now);
        self.event(LinkEvent::Connected { session_present });
    }

    /// The device's time was corrected (a signed time answer accepted):
    /// the online status, whose `written_s` may have been read from a wrong
    /// clock, goes out again now, and the refresh interval starts afresh.
    pub fn refresh_status(&mut self, now: u64) {
        if self.is_connected() {
            self.publish_status(now);
        }
    }

    /// The online status now, and the next refresh one interval later.
    fn publish_status(&mut self, now: u64) {
        let refresh_s = self.refresh_s();
        self.status_due = if refresh_s == 0 {
            u64::MAX
        } else {
            now.saturating_add(u64::from(refresh_s) * 1000)
        };
        self.flow.queued += 1;
        self.transmit(Transmit::Status {
            online: true,
            refresh_s,
        });
    }

    /// Any packet arrived on attempt `attempt`'s connection.
    pub fn handle_incoming(&mut self, attempt: u32, now: u64) {
        if let (true, Phase::Connected { last_incoming }) = (self.current(attempt), &mut self.phase)
        {
            *last_incoming = now;
        }
    }

    /// A QoS 1 message `pkid` was handled (its answers are queued): its
    /// PUBACK is owed. A broker that exceeds the device's window loses the
    /// connection (it redelivers on the next).
    pub fn handle_delivery(&mut self, attempt: u32, pkid: u16, now: u64, random: u32) {
        if !self.current(attempt) || !self.is_connected() {
            return;
        }
        if self.flow.pubacks.push_back(pkid).is_err() {
            self.transmit(Transmit::Abort { attempt });
            self.lost(LossCause::TooManyUnacked, now, random);
        }
    }

    /// The MQTT client's count of our publishes awaiting the broker's
    /// acknowledgement, after the last event.
    pub fn handle_inflight(&mut self, attempt: u32, inflight: u16) {
        if self.current(attempt) {
            self.flow.inflight = inflight;
        }
    }

    /// One of our publishes was written to the connection.
    pub fn handle_written(&mut self, attempt: u32) {
        if self.current(attempt) {
            self.flow.queued = self.flow.queued.saturating_sub(1);
        }
    }

    /// The DISCONNECT was written: a graceful close is complete.
    pub fn handle_disconnect_written(&mut self, attempt: u32) {
        if let (true, Phase::Closing { then, .. }) = (self.current(attempt), self.phase) {
            self.closed(then);
        }
    }

    /// Attempt `attempt` failed to connect, or its connection was lost.
    pub fn handle_error(&mut self, attempt: u32, now: u64, random: u32) {
        if !self.current(attempt) {
            return;
        }
        match self.phase {
            Phase::Connecting { .. } => self.connect_failed(false, now, random),
            Phase::Connected { .. } => {
                self.poison_strikes = 0;
                self.lost(LossCause::Error, now, random)
            }
            Phase::Closing { then, .. } => self.closed(then),
            Phase::Waiting { .. } | Phase::Disabled | Phase::Stopped => {}
        }
    }

    /// How many more of our publishes the MQTT client may take now.
    pub fn publish_room(&self) -> usize {
        if !self.is_connected() {
            return 0;
        }
        self.flow.room(self.policy.inflight_window)
    }

    /// `count` publishes were handed to the MQTT client.
    pub fn handed(&mut self, count: usize) {
        self.flow.queued += count;
    }

    /// The oldest PUBACK owed, to be handed to the MQTT client. It must
    /// never be dropped: the broker redelivers an unacknowledged message
    /// only on a new connection and keeps it in its in-flight window
    /// meanwhile; once that window is full it delivers nothing more.
    pub fn next_puback(&self) -> Option<u16> {
        if self.is_connected() {
            self.flow.pubacks.front().copied()
        } else {
            None
        }
    }

    /// The oldest owed PUBACK was handed to the MQTT client.
    pub fn puback_handed(&mut self) {
        self.flow.pubacks.pop_front();
    }

    fn current(&self, attempt: u32) -> bool {
        attempt == self.attempt
    }

    fn connect_failed(&mut self, timed_out: bool, now: u64, random: u32) {
        // Another endpoint left in this round: fail over to it at once;
        // the backoff counts whole rounds.
        let retry_in = match self.endpoints.on_connect_failed(random) {
            Some(failover) => failover,
            None => self.backoff.on_connect_failed(random),
        };
        self.wait_from(now, retry_in);
        self.event(LinkEvent::ConnectFailed {
            timed_out,
            retry_in,
        });
    }

    fn lost(&mut self, cause: LossCause, now: u64, random: u32) {
        self.backoff.on_disconnected(now, cause.origin());
        let retry_in = self.backoff.on_connect_failed(random);
        self.wait_from(now, retry_in);
        self.event(LinkEvent::Lost { cause, retry_in });
    }

    fn wait_from(&mut self, now: u64, retry_in: Duration) {
        self.reset_connection();
        self.phase = Phase::Waiting {
            until: now + millis(retry_in),
        };
    }

    fn reset_connection(&mut self) {
        // The broker redelivers what this connection did not acknowledge.
        self.flow = Flow::default();
    }

    fn transmit(&mut self, transmit: Transmit) {
        // A step queues at most TRANSMITS; the driver empties the queue
        // after every step.
        let _ = self.transmits.push_back(transmit);
    }

    fn event(&mut self, event: LinkEvent) {
        let _ = self.events.push_back(event);
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
pub(crate) mod tests;
