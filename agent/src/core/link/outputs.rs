//! What the link asks the driver to do (`Transmit`) and what it reports
//! (`LinkEvent`).

use core::time::Duration;

use crate::core::backoff::LossOrigin;

/// What the driver must do on the MQTT connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transmit {
    /// Start connection attempt `attempt` (the MQTT client connects).
    Connect {
        /// The attempt's number, to tag what the driver reports about it.
        attempt: u32,
        /// Start a clean session: the broker drops what it queued for the
        /// device (see `Link::handle_undecodable`).
        clean_session: bool,
        /// Which configured broker endpoint to connect to.
        endpoint: u8,
    },
    /// Drop attempt `attempt`'s connection now, without a DISCONNECT.
    Abort {
        /// The attempt to drop.
        attempt: u32,
    },
    /// Subscribe to the device's inbound topics.
    Subscribe,
    /// Publish the retained online/offline status, written now (the driver
    /// stamps it with the device's trusted time, which the link does not
    /// know).
    Status {
        /// Online (true) or offline (false).
        online: bool,
        /// The refresh interval the status promises, seconds (0 offline).
        refresh_s: u32,
    },
    /// Send DISCONNECT (after which the broker discards the last will).
    Disconnect,
}

/// Why an established connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossCause {
    /// The connection failed (reset, closed by the broker, a bad packet).
    Error,
    /// Nothing came from the broker for 1.5 keep-alive intervals.
    Silent,
    /// The broker sent more unacknowledged messages than the device holds.
    TooManyUnacked,
    /// A packet the MQTT client could not take (too large, malformed).
    Undecodable,
    /// The broker closed the connection (with MQTT 3.1.1, the way it
    /// drops a client whose id another client took).
    ClosedByBroker,
}

impl LossCause {
    /// Which side ended the connection, for the backoff: only a close by
    /// the broker hits a whole fleet in the same instant.
    pub fn origin(self) -> LossOrigin {
        match self {
            LossCause::ClosedByBroker => LossOrigin::Broker,
            LossCause::Error
            | LossCause::Silent
            | LossCause::TooManyUnacked
            | LossCause::Undecodable => LossOrigin::Device,
        }
    }
}

/// What happened, for the log and for the rest of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// The broker accepted the connection.
    Connected {
        /// The broker kept the persistent session.
        session_present: bool,
    },
    /// A connection attempt failed; the next starts after `retry_in`.
    ConnectFailed {
        /// The attempt hit its deadline (rather than an error).
        timed_out: bool,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// An established connection was lost.
    Lost {
        /// Why.
        cause: LossCause,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// The link was closed on purpose (platform access off, or shutdown).
    Closed,
    /// The link connected with a clean session after a message broke the
    /// connection `POISON_STRIKES` times: what the broker had queued for
    /// the device is gone, and the cloud re-sends what it has no
    /// acknowledgement for.
    SessionDiscarded,
    /// The broker closed the connection soon after accepting it several
    /// times in a row: another client is taking this device's session
    /// (see `Link::handle_closed_by_broker`).
    SessionContested,
    /// The broker accepted a connection without the device's persistent
    /// session, which it had before: what it had queued is lost (a broker
    /// that lost its store, or a client that took the session with a clean
    /// one).
    SessionLost,
    /// The broker refused a subscription; the link subscribes again after
    /// `retry_in` (see `Link::handle_suback`).
    SubscriptionRefused {
        /// Delay before subscribing again.
        retry_in: Duration,
    },
}
