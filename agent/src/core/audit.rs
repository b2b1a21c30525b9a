//! The audit ring: the most recent decisions and changes, oldest dropped
//! first. Kept in memory only (flash wears); the cloud and the local socket
//! can ask for the newest entries.

use hc_protocol::limits::{MAX_AUDIT_ENTRIES, MAX_AUDIT_REPLY};
use hc_protocol::messages::AuditEntry;

/// The last `MAX_AUDIT_ENTRIES` audit entries, in the order recorded.
#[derive(Debug, Default)]
pub struct AuditRing {
    entries: heapless::Deque<AuditEntry, MAX_AUDIT_ENTRIES>,
    /// Entries pushed out of the ring since start-up.
    overwritten: u64,
}

impl AuditRing {
    /// An empty ring (the state at start-up).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an entry; when the ring is full the oldest one is pushed
    /// out and counted in `overwritten`.
    pub fn record(&mut self, entry: AuditEntry) {
        if self.entries.is_full() {
            self.entries.pop_front();
            self.overwritten += 1;
        }
        // Cannot fail: a slot was freed above.
        let _ = self.entries.push_back(entry);
    }

    /// Up to `max` newest entries, oldest first.
    pub fn recent(&self, max: u16) -> heapless::Vec<AuditEntry, MAX_AUDIT_REPLY> {
        let take = usize::from(max)
            .min(MAX_AUDIT_REPLY)
            .min(self.entries.len());
        self.entries
            .iter()
            .skip(self.entries.len() - take)
            .cloned()
            .collect()
    }

    /// How many entries the ring holds now (at most `MAX_AUDIT_ENTRIES`).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing was recorded since start-up.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries pushed out of the ring since start-up: how much history
    /// the ring no longer shows.
    pub fn overwritten(&self) -> u64 {
        self.overwritten
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hc_protocol::messages::{AuditActor, AuditEvent};
    use hc_protocol::{Outcome, Reason};

    fn entry(at: u64) -> AuditEntry {
        AuditEntry {
            at,
            actor: AuditActor::Device,
            event: AuditEvent::PlatformAccess { enabled: true },
            outcome: Outcome::Refused(Reason::Busy),
        }
    }

    #[test]
    fn ring_is_bounded_and_drops_oldest_first() {
        let mut ring = AuditRing::new();
        for at in 0..(MAX_AUDIT_ENTRIES as u64 + 10) {
            ring.record(entry(at));
        }
        assert_eq!(ring.len(), MAX_AUDIT_ENTRIES);
        assert_eq!(ring.overwritten(), 10);
        let recent = ring.recent(3);
        let times: Vec<u64> = recent.iter().map(|e| e.at).collect();
        let last = MAX_AUDIT_ENTRIES as u64 + 9;
        assert_eq!(times, vec![last - 2, last - 1, last]);
    }

    #[test]
    fn recent_is_capped_by_the_reply_limit() {
        let mut ring = AuditRing::new();
        for at in 0..100 {
            ring.record(entry(at));
        }
        assert_eq!(ring.recent(u16::MAX).len(), MAX_AUDIT_REPLY);
        assert_eq!(ring.recent(0).len(), 0);
    }
}
