//! Closing the link on purpose: platform access switched off (and on
//! again), shutdown, and a reconnect to use a renewed certificate. Connected, it goes offline gracefully (the offline
//! status, then DISCONNECT, forced after the grace period); otherwise it
//! abandons the attempt in flight at once.

use super::{millis, LinkEvent};
use super::{AfterClose, Link, Phase, Transmit};

impl Link {
    /// Platform access was switched: open or close the link.
    pub fn set_enabled(&mut self, enabled: bool, now: u64) {
        match (enabled, self.phase) {
            (true, Phase::Disabled) => self.phase = Phase::Waiting { until: now },
            (false, Phase::Waiting { .. } | Phase::Connecting { .. } | Phase::Connected { .. }) => {
                self.close_with(AfterClose::Disable, now)
            }
            _ => {}
        }
    }

    /// Whether platform access is on as far as the link knows.
    pub fn is_enabled(&self) -> bool {
        !matches!(
            self.phase,
            Phase::Disabled
                | Phase::Closing {
                    then: AfterClose::Disable,
                    ..
                }
        )
    }

    /// Connect again, with what the next attempt loads (a renewed
    /// certificate): a connected link disconnects cleanly, without the
    /// offline status since it is back at once (the broker drops the will
    /// on a DISCONNECT), and connects again when the DISCONNECT is written
    /// or the grace period ends. Otherwise the next attempt loads it anyway.
    pub fn reconnect(&mut self, now: u64) {
        if let Phase::Connected { .. } = self.phase {
            self.transmit(Transmit::Disconnect);
            self.phase = Phase::Closing {
                deadline: now + millis(self.policy.close_grace),
                then: AfterClose::Reconnect,
            };
        }
    }

    /// Shutdown: go offline gracefully if connected, then stop.
    pub fn close(&mut self, now: u64) {
        match self.phase {
            Phase::Stopped => {}
            Phase::Closing { deadline, .. } => {
                self.phase = Phase::Closing {
                    deadline,
                    then: AfterClose::Stop,
                }
            }
            _ => self.close_with(AfterClose::Stop, now),
        }
    }

    fn close_with(&mut self, then: AfterClose, now: u64) {
        match self.phase {
            Phase::Connected { .. } => {
                self.transmit(Transmit::Status {
                    online: false,
                    refresh_s: 0,
                });
                self.transmit(Transmit::Disconnect);
                self.phase = Phase::Closing {
                    deadline: now + millis(self.policy.close_grace),
                    then,
                };
            }
            Phase::Connecting { .. } => {
                self.transmit(Transmit::Abort {
                    attempt: self.attempt,
                });
                self.closed(then);
            }
            _ => self.closed(then),
        }
    }

    pub(super) fn closed(&mut self, then: AfterClose) {
        if let Phase::Closing { .. } = self.phase {
            self.transmit(Transmit::Abort {
                attempt: self.attempt,
            });
        }
        self.reset_connection();
        self.phase = match then {
            AfterClose::Disable => Phase::Disabled,
            AfterClose::Stop => Phase::Stopped,
            AfterClose::Reconnect => Phase::Waiting { until: 0 },
        };
        self.event(LinkEvent::Closed);
    }
}
