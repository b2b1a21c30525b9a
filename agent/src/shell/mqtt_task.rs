//! The MQTT client's event loop in a task of its own. rumqttc connects,
//! reads and writes inside `EventLoop::poll`, which must not be cancelled
//! half-way: a dropped poll abandons a connect mid-handshake (the broker
//! sees a second connection, and a broker slower than the other timers was
//! never reached) or a packet half-written. So this task polls without
//! interruption and hands every event, tagged with the connection attempt
//! it belongs to, to the driver over a channel whose receive is
//! cancel-safe. The driver says which attempt may run; a poll is dropped
//! only when the driver ends that attempt on purpose (its deadline, a dead
//! link, platform access off, shutdown).

use std::sync::Arc;
use std::time::Duration;

use hc_protocol::limits::{MAX_MESSAGE_BYTES, MAX_MQTT_PACKET_BYTES};
use hc_protocol::topics::{self, Leaf};
use hc_protocol::Serial;
use rumqttc::{
    ConnectionError, Event, EventLoop, LastWill, MqttOptions, QoS, Request, TlsConfiguration,
    Transport,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::config::Config;
use super::device::Agent;
use crate::store::RealFlash;

/// Events buffered between the task and the driver; the task waits when
/// the driver is behind.
const EVENT_BUFFER: usize = 16;

/// One event of the MQTT connection, as the link needs it.
pub(crate) struct MqttEvent {
    /// The connection attempt it belongs to.
    pub(crate) attempt: u32,
    pub(crate) event: Result<Event, ConnectionError>,
    /// Our publishes awaiting the broker's acknowledgement after it.
    pub(crate) inflight: u16,
    /// Publishes of an earlier connection the client sends again first.
    pub(crate) pending_publishes: usize,
}

/// The running task and the two ends the driver holds.
pub(crate) struct MqttTask {
    /// `Some(attempt)`: poll (and so connect) for that attempt, with a
    /// clean session or not; `None`: drop any connection and wait.
    mode: watch::Sender<Option<Attempt>>,
    /// The TLS configuration for the next connection (a renewed
    /// certificate); rumqttc reads its options only when it connects.
    tls: watch::Sender<Option<Arc<rustls::ClientConfig>>>,
    events: mpsc::Receiver<MqttEvent>,
    task: JoinHandle<()>,
}

impl MqttTask {
    /// Starts the task, idle, with the options of each broker endpoint
    /// (the event loop's own are those of the first one tried). Must be
    /// called inside a `LocalSet`.
    pub(crate) fn spawn(eventloop: EventLoop, endpoints: Vec<MqttOptions>) -> Self {
        let (mode, mode_rx) = watch::channel(None);
        let (tls, tls_rx) = watch::channel(None);
        let (events_tx, events) = mpsc::channel(EVENT_BUFFER);
        let task =
            tokio::task::spawn_local(poll_loop(eventloop, endpoints, mode_rx, tls_rx, events_tx));
        MqttTask {
            mode,
            tls,
            events,
            task,
        }
    }

    /// Connections from now on use `config`.
    pub(crate) fn set_tls(&self, config: Arc<rustls::ClientConfig>) {
        self.tls.send_replace(Some(config));
    }

    /// Runs connection attempt `attempt` to broker endpoint `endpoint`,
    /// with a last will written at `now` (trusted time, Unix seconds).
    pub(crate) fn connect(&self, attempt: u32, clean_session: bool, endpoint: u8, now: u64) {
        self.set_mode(Some(Attempt {
            number: attempt,
            clean_session,
            endpoint,
            will_written_s: now,
        }));
    }

    /// Drops the current connection or attempt, whatever it is doing.
    pub(crate) fn abort(&self) {
        self.set_mode(None);
    }

    fn set_mode(&self, mode: Option<Attempt>) {
        self.mode.send_if_modified(|current| {
            let changed = *current != mode;
            *current = mode;
            changed
        });
    }

    /// The next event. Cancel-safe: nothing is lost when another branch of
    /// a `select!` wins.
    pub(crate) async fn next(&mut self) -> Option<MqttEvent> {
        self.events.recv().await
    }
}

impl Drop for MqttTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A connection attempt the driver asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Attempt {
    number: u32,
    clean_session: bool,
    endpoint: u8,
    /// The `written_s` of this attempt's last will: its CONNECT's time.
    will_written_s: u64,
}

async fn poll_loop(
    mut eventloop: EventLoop,
    mut endpoints: Vec<MqttOptions>,
    mut mode: watch::Receiver<Option<Attempt>>,
    mut tls: watch::Receiver<Option<Arc<rustls::ClientConfig>>>,
    events: mpsc::Sender<MqttEvent>,
) {
    // The endpoint whose options the event loop holds (`None`: the ones it
    // was built with, taken again at the first attempt).
    let mut in_use: Option<u8> = None;
    // The attempt whose last will the options hold.
    let mut willed: Option<u32> = None;
    loop {
        if tls.has_changed().unwrap_or(false) {
            if let Some(config) = tls.borrow_and_update().clone() {
                eventloop
                    .mqtt_options
                    .set_transport(tls_transport(config.clone()));
                for options in &mut endpoints {
                    options.set_transport(tls_transport(config.clone()));
                }
            }
        }
        let Some(current) = *mode.borrow_and_update() else {
            eventloop.clean();
            if mode.changed().await.is_err() {
                return;
            }
            continue;
        };
        // rumqttc has no setter for the broker's address: a failover
        // swaps in that endpoint's options (the same but for the address)
        // while no connection is up.
        if in_use != Some(current.endpoint) {
            if let Some(options) = endpoints.get(usize::from(current.endpoint)) {
                eventloop.mqtt_options = options.clone();
                in_use = Some(current.endpoint);
                willed = None;
            }
        }
        // The will goes in the CONNECT, so it is set per attempt, with the
        // attempt's time (SPEC §2.1): once, not at every event.
        if willed != Some(current.number) {
            if let Some(will) = eventloop.mqtt_options.last_will() {
                eventloop.mqtt_options.set_last_will(LastWill::new(
                    will.topic,
                    Agent::<RealFlash>::status_payload(false, current.will_written_s, 0),
                    QoS::AtLeastOnce,
                    true,
                ));
            }
            willed = Some(current.number);
        }
        let attempt = current.number;
        // Read by rumqttc when it connects (its network is gone after an
        // error or an abort, so the next poll connects).
        eventloop
            .mqtt_options
            .set_clean_session(current.clean_session);
        let event = tokio::select! {
            biased;
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                // Another attempt, or none: this connection is given up.
                eventloop.clean();
                continue;
            }
            event = eventloop.poll() => event,
        };
        let failed = event.is_err();
        let event = MqttEvent {
            attempt,
            event,
            inflight: eventloop.state.inflight(),
            pending_publishes: eventloop
                .pending
                .iter()
                .filter(|request| matches!(request, Request::Publish(_)))
                .count(),
        };
        if events.send(event).await.is_err() {
            return;
        }
        if failed {
            // rumqttc would reconnect at the next poll: only the driver
            // decides when (backoff).
            loop {
                if mode.changed().await.is_err() {
                    return;
                }
                if *mode.borrow_and_update() != Some(current) {
                    break;
                }
            }
        }
    }
}

/// The MQTT client's options: a persistent session under the serial,
/// manual acknowledgements (a message is acknowledged once handled), the
/// packet size limits, `inflight` publishes in flight, the retained
/// offline status as last will (its time set per attempt), and TLS unless the configuration says
/// plaintext (tests only).
pub(crate) fn options(
    config: &Config,
    serial: &Serial,
    inflight: u16,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    host: String,
    port: u16,
) -> MqttOptions {
    let mut options = MqttOptions::new(config.serial.clone(), host, port);
    options.set_keep_alive(Duration::from_secs(config.cloud.keep_alive_secs));
    options.set_clean_session(false);
    options.set_manual_acks(true);
    options.set_max_packet_size(MAX_MQTT_PACKET_BYTES, MAX_MESSAGE_BYTES + 512);
    options.set_inflight(inflight);
    // Its time is set at each attempt (see `poll_loop`).
    options.set_last_will(LastWill::new(
        topics::topic(serial, Leaf::Status),
        Agent::<RealFlash>::status_payload(false, 0, 0),
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(tls_config) = tls_config {
        options.set_transport(tls_transport(tls_config));
    }
    options
}

fn tls_transport(config: Arc<rustls::ClientConfig>) -> Transport {
    Transport::tls_with_config(TlsConfiguration::Rustls(config))
}
