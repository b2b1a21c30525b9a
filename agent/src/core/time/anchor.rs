//! Signed time (SPEC.md §8.4), sans-IO: when to ask the cloud for the time,
//! which answer to accept, and the trusted time since then. Times are
//! passed in: `mono` is the device's monotonic clock in milliseconds (one
//! that counts through suspend and never jumps), and the nonce comes from
//! the caller's random source. Nothing here is stored: monotonic time
//! restarts at boot, and so does the anchor.

use hc_protocol::envelope::CommandKeys;
use hc_protocol::limits::MAX_TIME_ROUND_TRIP_MS;
use hc_protocol::time::{
    open_time_answer, TimeRequest, NONCE_LEN, TIME_REFRESH_SECS, TIME_RETRY_SECS,
};
use hc_protocol::{Reason, Serial};

/// When to ask and how long an answer may take, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimePolicy {
    /// The longest round trip an accepted answer may take.
    pub round_trip_max_ms: u64,
    /// From a request whose answer was accepted to the next request.
    pub refresh_ms: u64,
    /// From a request with no accepted answer to the next one.
    pub retry_ms: u64,
}

impl Default for TimePolicy {
    /// The protocol's values (SPEC.md §13).
    fn default() -> Self {
        TimePolicy {
            round_trip_max_ms: MAX_TIME_ROUND_TRIP_MS,
            refresh_ms: TIME_REFRESH_SECS * 1000,
            retry_ms: TIME_RETRY_SECS * 1000,
        }
    }
}

/// Signed time tied to the monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// The monotonic reading when the answer arrived.
    pub mono_ms: u64,
    /// The true time then, Unix milliseconds (the answer's time plus half
    /// the round trip).
    pub unix_ms: u64,
    /// How far `unix_ms` may be off: the cloud's radius plus half the
    /// round trip.
    pub half_width_ms: u64,
    /// The round trip of the request it answered.
    pub round_trip_ms: u64,
}

impl Anchor {
    /// The trusted time at monotonic reading `mono`, Unix milliseconds.
    pub fn at(&self, mono: u64) -> u64 {
        self.unix_ms
            .saturating_add(mono.saturating_sub(self.mono_ms))
    }
}

/// The request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    nonce: [u8; NONCE_LEN],
    sent_ms: u64,
}

/// The signed-time state machine of one agent run.
#[derive(Debug, Clone, Default)]
pub struct TrustedTime {
    policy: TimePolicy,
    anchor: Option<Anchor>,
    pending: Option<Pending>,
    /// When to ask next; `None` while the link is down.
    next_request_ms: Option<u64>,
}

impl TrustedTime {
    /// No signed time yet, nothing to ask until connected.
    pub fn new(policy: TimePolicy) -> Self {
        TrustedTime {
            policy,
            ..TrustedTime::default()
        }
    }

    /// The link came up: ask at once.
    pub fn on_connected(&mut self, mono: u64) {
        self.pending = None;
        self.next_request_ms = Some(mono);
    }

    /// The link went down: nothing is outstanding any more (an answer
    /// cannot arrive), and nothing is asked until the next connect. The
    /// anchor stays: the monotonic clock still counts.
    pub fn on_disconnected(&mut self) {
        self.pending = None;
        self.next_request_ms = None;
    }

    /// When the next request falls due (monotonic milliseconds).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.next_request_ms
    }

    /// Whether a request is due at `mono`.
    pub fn request_due(&self, mono: u64) -> bool {
        self.next_request_ms.is_some_and(|at| at <= mono)
    }

    /// Starts a request with a fresh `nonce` (it replaces any outstanding
    /// one); without an accepted answer the next one follows after the
    /// retry interval.
    pub fn start_request(&mut self, mono: u64, nonce: [u8; NONCE_LEN]) -> TimeRequest {
        self.pending = Some(Pending {
            nonce,
            sent_ms: mono,
        });
        self.next_request_ms = Some(mono.saturating_add(self.policy.retry_ms));
        TimeRequest { nonce }
    }

    /// A signed time answer arrived at `mono`. Accepted only if it verifies
    /// for `serial` with `keys`, answers the outstanding nonce and came
    /// within the round-trip bound; a refused answer changes nothing but a
    /// late one, whose request is then over.
    pub fn handle_answer(
        &mut self,
        bytes: &[u8],
        keys: &CommandKeys,
        serial: &Serial,
        mono: u64,
    ) -> Result<Anchor, Reason> {
        let answer = open_time_answer(bytes, keys, serial).map_err(|e| e.reason())?;
        let pending = self
            .pending
            .filter(|p| p.nonce == answer.nonce)
            .ok_or(Reason::UnexpectedTimeAnswer)?;
        let round_trip_ms = mono.saturating_sub(pending.sent_ms);
        if round_trip_ms > self.policy.round_trip_max_ms {
            self.pending = None;
            return Err(Reason::LateTimeAnswer);
        }
        let anchor = Anchor {
            mono_ms: mono,
            unix_ms: answer.time_ms.saturating_add(round_trip_ms / 2),
            half_width_ms: u64::from(answer.radius_ms).saturating_add(round_trip_ms.div_ceil(2)),
            round_trip_ms,
        };
        self.anchor = Some(anchor);
        self.pending = None;
        self.next_request_ms = self
            .next_request_ms
            .map(|_| pending.sent_ms.saturating_add(self.policy.refresh_ms));
        Ok(anchor)
    }

    /// The last accepted answer, if any since start-up.
    pub fn anchor(&self) -> Option<&Anchor> {
        self.anchor.as_ref()
    }

    /// The trusted time at `mono`, Unix milliseconds; `None` without an
    /// anchor (the caller then falls back on the wall clock and the floor).
    pub fn now_ms(&self, mono: u64) -> Option<u64> {
        self.anchor.map(|a| a.at(mono))
    }

    /// The time decisions take, Unix milliseconds: with an anchor the
    /// anchored time, never below the floor (which then only signed times
    /// raise); without one the wall clock as it is, which the decisions
    /// check against the floor (SPEC.md §8.3).
    pub fn decision_ms(&self, floor: &super::TrustedClock, mono: u64, wall_ms: u64) -> u64 {
        match self.now_ms(mono) {
            Some(trusted) => trusted.max(floor.floor().saturating_mul(1000)),
            None => wall_ms,
        }
    }

    /// The wall clock's offset from trusted time (`wall - trusted`, in
    /// milliseconds; positive: the wall clock is ahead), with an anchor.
    pub fn offset_ms(&self, mono: u64, wall_ms: u64) -> Option<i64> {
        let trusted = i128::from(self.now_ms(mono)?);
        let offset = i128::from(wall_ms) - trusted;
        Some(offset.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    }
}

#[cfg(test)]
#[path = "anchor_tests.rs"]
mod tests;
