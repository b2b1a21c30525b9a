//! The agent's time: the one function that turns a reading of the clocks
//! into the time decisions take (signed time while the agent holds it, the
//! wall clock otherwise), and the signed-time exchange with the cloud.

use hc_protocol::codec;
use hc_protocol::limits::MAX_MESSAGE_BYTES;
use hc_protocol::time::NONCE_LEN;
use tracing::{info, warn};

use super::Agent;
use crate::core::time::TrustedTime;
use crate::shell::clock::Reading;
use crate::store::Flash;

impl<F: Flash> Agent<F> {
    /// The time decisions take at `reading`, Unix seconds; the reading is
    /// kept for the status reply. Every event handed to the agent is timed
    /// by this.
    pub fn now(&mut self, reading: Reading) -> u64 {
        self.reading = reading;
        self.now_ms(reading) / 1000
    }

    /// The time decisions take at `reading`, Unix milliseconds (for
    /// deadlines to the millisecond).
    pub fn now_ms(&self, reading: Reading) -> u64 {
        self.time
            .decision_ms(&self.state.clock, reading.mono_ms, reading.wall_ms)
    }

    /// The wall clock's offset from trusted time at the last reading, in
    /// milliseconds; `None` without signed time.
    pub fn clock_offset_ms(&self) -> Option<i64> {
        self.time
            .offset_ms(self.reading.mono_ms, self.reading.wall_ms)
    }

    /// The signed-time state (the driver tells it about connections).
    pub fn time(&mut self) -> &mut TrustedTime {
        &mut self.time
    }

    /// When the next time request falls due, monotonic milliseconds.
    pub fn time_request_due_at(&self) -> Option<u64> {
        self.time.poll_timeout()
    }

    /// Queues a time request with `nonce` if one is due at `reading`.
    /// Returns its payload for the driver to publish at once (QoS 0; it is
    /// not kept in the outbox, as an answer to it is good for a few
    /// seconds only).
    pub fn time_request_if_due(
        &mut self,
        reading: Reading,
        nonce: [u8; NONCE_LEN],
    ) -> Option<Vec<u8>> {
        if !self.time.request_due(reading.mono_ms) {
            return None;
        }
        let request = self.time.start_request(reading.mono_ms, nonce);
        // A 16-byte array always encodes.
        codec::encode(&request, MAX_MESSAGE_BYTES).ok()
    }

    /// A signed time answer arrived: accepted, it anchors trusted time,
    /// settles the floor and publishes the state report with the measured
    /// offset; refused, it changes nothing. Returns whether it was
    /// accepted.
    pub fn on_time_answer(&mut self, payload: &[u8], reading: Reading) -> bool {
        self.reading = reading;
        let serial = &self.state.identity.serial;
        match self
            .time
            // Time answers are signed with the command keys: the same ring.
            .handle_answer(
                payload,
                self.state.key_ring(&self.keys),
                serial,
                reading.mono_ms,
            ) {
            Ok(anchor) => {
                let offset_ms = self.clock_offset_ms();
                info!(
                    round_trip_ms = anchor.round_trip_ms,
                    within_ms = anchor.half_width_ms,
                    wall_clock_offset_ms = offset_ms,
                    "signed time accepted"
                );
                self.offset_at_answer = offset_ms;
                let lower_bound = anchor.unix_ms.saturating_sub(anchor.half_width_ms) / 1000;
                if self.state.clock.settle(lower_bound) {
                    if let Err(e) = self.save_current() {
                        warn!(error = %e, "settled trusted-time floor could not be written");
                    }
                }
                self.checkpoint_clock();
                self.queue_state_report();
                true
            }
            Err(reason) => {
                warn!(%reason, bytes = payload.len(), "time answer refused");
                false
            }
        }
    }
}
