//! Flow on an established connection: the broker's messages handled and
//! still owed a PUBACK (oldest first), and how many of our own publishes
//! the MQTT client holds, queued or in flight.

use hc_protocol::limits::MAX_UNACKED_INBOUND;
use heapless::Deque;

/// What one connection owes and holds; forgotten with the connection (the
/// broker redelivers what it did not get a PUBACK for).
#[derive(Debug, Default)]
pub(super) struct Flow {
    /// Packet ids owed a PUBACK, oldest first.
    pub(super) pubacks: Deque<u16, MAX_UNACKED_INBOUND>,
    /// Our publishes handed to the MQTT client and not yet written.
    pub(super) queued: usize,
    /// Our publishes written and awaiting the broker's PUBACK.
    pub(super) inflight: u16,
}

impl Flow {
    /// A new connection, on which the client first sends again `resent`
    /// publishes of the last one.
    pub(super) fn new(resent: usize) -> Flow {
        Flow {
            queued: resent,
            ..Flow::default()
        }
    }

    /// Of a window of `window` publishes, how many more we may hand over:
    /// two are kept free (the status, and room for the client's PUBACKs,
    /// which it stops sending while the window is full).
    pub(super) fn room(&self, window: u16) -> usize {
        usize::from(window.saturating_sub(2))
            .saturating_sub(usize::from(self.inflight) + self.queued)
    }
}
