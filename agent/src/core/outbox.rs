//! The bounded queue of messages for the cloud. Messages wait here while
//! the link is down and leave in order once it is up. The retained state
//! report is coalesced (only the newest matters); anything else that does
//! not fit pushes out the oldest entry, and every such loss is counted and
//! reported in the state report, never silent. Acknowledgements are the
//! last to go: an overflow pushes out the oldest audit reply or domain
//! registration first (re-requested or re-sent in time), then the state
//! report (queued again with the next change and every reconnect), and only
//! a queue of nothing but acknowledgements loses one (the cloud then
//! resends that command and gets its outcome again).

use std::collections::VecDeque;

use hc_protocol::limits::MAX_QUEUED_REPORTS;
use hc_protocol::topics::Leaf;

/// One message for the cloud: the leaf of this device's topic tree and
/// the encoded payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Where it goes under this device's topic tree; also decides what an
    /// overflow pushes out first.
    pub leaf: Leaf,
    /// The encoded message, ready to publish.
    pub payload: Vec<u8>,
}

/// The messages waiting for the link, oldest first, at most
/// `MAX_QUEUED_REPORTS` of them.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Outgoing>,
    dropped: u32,
}

impl Outbox {
    /// An empty outbox with room for `MAX_QUEUED_REPORTS` messages
    /// allocated up front.
    pub fn new() -> Self {
        Outbox {
            queue: VecDeque::with_capacity(MAX_QUEUED_REPORTS),
            dropped: 0,
        }
    }

    /// Queues a message; returns the message pushed out to make room, if any.
    pub fn push(&mut self, message: Outgoing) -> Option<Outgoing> {
        if message.leaf == Leaf::State {
            self.queue.retain(|m| m.leaf != Leaf::State);
        }
        let lost = if self.queue.len() >= MAX_QUEUED_REPORTS {
            self.dropped = self.dropped.saturating_add(1);
            let oldest = |keep: &[Leaf]| self.queue.iter().position(|m| !keep.contains(&m.leaf));
            let victim = oldest(&[Leaf::Ack, Leaf::State])
                .or_else(|| oldest(&[Leaf::Ack]))
                .unwrap_or(0);
            self.queue.remove(victim)
        } else {
            None
        };
        self.queue.push_back(message);
        lost
    }

    /// The next message to send, left in the queue until `sent` is called.
    pub fn peek(&self) -> Option<&Outgoing> {
        self.queue.front()
    }

    /// The front message was handed to the link.
    pub fn sent(&mut self) {
        self.queue.pop_front();
    }

    /// Messages waiting (the status reply's `reports_queued`).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing waits for the link.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Messages lost to overflow since start-up.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(leaf: Leaf, byte: u8) -> Outgoing {
        Outgoing {
            leaf,
            payload: vec![byte],
        }
    }

    /// An outbox that was handed `messages`, in order.
    fn outbox_with(messages: &[(Leaf, u8)]) -> Outbox {
        let mut outbox = Outbox::new();
        for &(leaf, byte) in messages {
            outbox.push(msg(leaf, byte));
        }
        outbox
    }

    #[test]
    fn state_reports_coalesce_to_the_newest() {
        let mut outbox = outbox_with(&[(Leaf::State, 1), (Leaf::Ack, 2), (Leaf::State, 3)]);
        assert_eq!(outbox.len(), 2);
        assert_eq!(outbox.peek(), Some(&msg(Leaf::Ack, 2)));
        outbox.sent();
        assert_eq!(outbox.peek(), Some(&msg(Leaf::State, 3)));
        assert_eq!(outbox.dropped(), 0);
    }

    #[test]
    fn overflow_pushes_out_the_oldest_and_is_counted() {
        let mut outbox = Outbox::new();
        for i in 0..MAX_QUEUED_REPORTS {
            assert_eq!(outbox.push(msg(Leaf::Ack, i as u8)), None);
        }
        let lost = outbox.push(msg(Leaf::Ack, 200));
        assert_eq!(lost, Some(msg(Leaf::Ack, 0)));
        assert_eq!(outbox.dropped(), 1);
        assert_eq!(outbox.len(), MAX_QUEUED_REPORTS);
        assert_eq!(outbox.peek(), Some(&msg(Leaf::Ack, 1)));
    }

    #[test]
    fn overflow_pushes_out_other_messages_before_any_acknowledgement() {
        let mut outbox = outbox_with(&[(Leaf::Ack, 0), (Leaf::State, 2), (Leaf::Audit, 1)]);
        for i in 3..MAX_QUEUED_REPORTS {
            outbox.push(msg(Leaf::Ack, i as u8));
        }
        assert_eq!(outbox.push(msg(Leaf::Ack, 200)), Some(msg(Leaf::Audit, 1)));
        assert_eq!(outbox.push(msg(Leaf::Ack, 201)), Some(msg(Leaf::State, 2)));
        assert_eq!(outbox.dropped(), 2);
        // Only acknowledgements left: the oldest of them goes, still counted.
        assert_eq!(outbox.push(msg(Leaf::Ack, 202)), Some(msg(Leaf::Ack, 0)));
        assert_eq!(outbox.dropped(), 3);
        assert_eq!(outbox.len(), MAX_QUEUED_REPORTS);
    }
}
