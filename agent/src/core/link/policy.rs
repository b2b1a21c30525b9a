//! The link's settings: timeouts, keep-alive, the in-flight window and
//! the reconnect backoff.

use core::time::Duration;

use crate::core::backoff::BackoffPolicy;

/// The link's timing and flow settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkPolicy {
    /// How long a connection attempt (TCP, TLS, CONNECT, CONNACK) may take.
    pub connect_timeout: Duration,
    /// The MQTT keep-alive; the broker answers every ping, so silence for
    /// 1.5 of these (the bound MQTT gives the server) is a dead link.
    pub keep_alive: Duration,
    /// How long a graceful close waits for the DISCONNECT to be written.
    pub close_grace: Duration,
    /// Publishes the MQTT client keeps in flight. It stops sending anything,
    /// acknowledgements included, while that many await the broker's
    /// acknowledgement, and a broker that holds its own acknowledgements
    /// back until it gets ours would then wait forever; so our publishes,
    /// queued or in flight, stay two below it (room for the status).
    pub inflight_window: u16,
    /// Reconnect delays.
    pub backoff: BackoffPolicy,
    /// How many broker endpoints there are (nodes of a cluster), at least
    /// one.
    pub endpoints: u8,
    /// The endpoint this device tries first (the driver spreads a fleet
    /// over the list by serial).
    pub first_endpoint: u8,
    /// How often the retained online status is published again while
    /// connected (whole seconds count; zero: never), so that a cloud can
    /// tell a device gone without its last will (SPEC.md §2.4).
    pub status_refresh: Duration,
}

impl Default for LinkPolicy {
    fn default() -> Self {
        LinkPolicy {
            connect_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(30),
            close_grace: Duration::from_secs(2),
            inflight_window: 32,
            backoff: BackoffPolicy::default(),
            endpoints: 1,
            first_endpoint: 0,
            status_refresh: Duration::from_secs(300),
        }
    }
}
