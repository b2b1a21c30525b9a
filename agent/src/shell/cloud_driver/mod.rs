//! The driver of the cloud link: the thin loop that connects the sans-IO
//! [`Link`](crate::core::link::Link) and the agent to the MQTT client, the
//! clocks and the network. It sleeps until the earliest deadline any part
//! asks for (the link's, the agent's, the next network check) or until
//! something arrives; there is no fixed tick. Every branch it waits on is
//! cancel-safe, and the MQTT connection itself is polled by its own task
//! (see `mqtt_task`), so no branch can cancel a connect in flight.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use hc_protocol::Serial;
use ring::rand::{SecureRandom, SystemRandom};
use rumqttc::{AsyncClient, ConnectionError, MqttOptions};
use tokio::time::Instant;

mod mqtt_io;
mod reload;
mod renewal_io;
pub(crate) use renewal_io::CertificateRenewal;
use tracing::info;

use super::config::Config;
use super::local_server::SharedService;
use super::mqtt_task::{self, MqttTask};
use super::net_facts;
use super::reload::Reload;
use super::tls_source::TlsSource;
use crate::core::backoff::BackoffPolicy;
use crate::core::domain::NetworkFacts;
use crate::core::link::{Link, LinkPolicy};

/// QoS 1 publishes the MQTT client keeps in flight (see `LinkPolicy`).
const INFLIGHT: u16 = 32;
/// Requests (publishes, acknowledgements) the MQTT client's queue holds.
/// Our publishes stay below `INFLIGHT` and PUBACKs below
/// `MAX_UNACKED_INBOUND`, so the queue is never the limit.
const CLIENT_QUEUE: usize = 128;
/// How long shutdown waits for the offline status to leave.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The shortest gap between two reads of the network facts that a due
/// domain registration may ask for (the periodic check is separate).
const FACTS_RETRY: Duration = Duration::from_secs(5);
/// The longest sleep: wall-clock deadlines are looked at again at least
/// this often, in case the wall clock was set.
const LONGEST_SLEEP: Duration = Duration::from_secs(3600);

type FactsCheck<'a> = Pin<Box<dyn Future<Output = Option<NetworkFacts>> + 'a>>;

/// Runs the cloud link until `shutdown` completes and the link has closed.
/// `tls` (the certificate renewal and the TLS configuration of the pair it
/// picked) is `None` only with `insecure_plaintext` (tests).
pub(crate) async fn drive(
    config: &Config,
    tls: Option<(CertificateRenewal, TlsSource)>,
    reload: Reload,
    shared: &Rc<SharedService>,
    shutdown: impl Future<Output = ()>,
) {
    let (renewal, tls) = match tls {
        Some((renewal, tls)) => (Some(renewal), Some(tls)),
        None => (None, None),
    };
    let serial = shared.agent.borrow().state().identity.serial.clone();
    let tls_config = tls.as_ref().map(TlsSource::current);
    // One set of options per broker endpoint (only the address differs).
    let endpoints: Vec<MqttOptions> = config
        .broker_endpoints()
        .into_iter()
        .map(|(host, port)| {
            mqtt_task::options(config, &serial, INFLIGHT, tls_config.clone(), host, port)
        })
        .collect();
    let first = endpoints[usize::from(config.first_endpoint())].clone();
    let (client, mut eventloop) = AsyncClient::new(first, CLIENT_QUEUE);
    // The link's own deadline governs; rumqttc's is only a backstop.
    eventloop
        .network_options
        .set_connection_timeout(config.cloud.connect_timeout_secs.saturating_add(5));
    // rumqttc writes and flushes each packet on its own: with Nagle's
    // algorithm an acknowledgement could wait ~40 ms for the broker's
    // delayed ACK of the packet before it (measured in docs/PERFORMANCE.md).
    eventloop.network_options.set_tcp_nodelay(true);
    // rumqttc reserves room for 100 events (14 KiB) that the task, taking
    // one event at a time, never needs; the queue grows if it must.
    eventloop.state.events = Default::default();
    let started = Instant::now();
    let enabled = shared.agent.borrow().platform_access();
    let mut driver = Driver {
        config,
        serial,
        client,
        mqtt: MqttTask::spawn(eventloop, endpoints),
        link: Link::new(link_policy(config), enabled, 0),
        shared,
        rng: SystemRandom::new(),
        started,
        next_network_check: None,
        last_facts_read: None,
        facts_check: None,
        connection_error: None,
        tls,
        renewal,
        reload,
    };
    if !enabled {
        info!("platform access is off: the cloud link stays closed");
    }
    driver.run(shutdown).await;
}

/// The link's timing from the configuration (validated: no value
/// overflows a duration or a deadline).
pub fn link_policy(config: &Config) -> LinkPolicy {
    LinkPolicy {
        connect_timeout: Duration::from_secs(config.cloud.connect_timeout_secs),
        keep_alive: Duration::from_secs(config.cloud.keep_alive_secs),
        close_grace: CLOSE_GRACE,
        inflight_window: INFLIGHT,
        backoff: BackoffPolicy {
            base: Duration::from_millis(config.cloud.backoff_base_ms),
            cap: Duration::from_millis(config.cloud.backoff_cap_ms),
            reconnect_spread: Duration::from_millis(config.cloud.reconnect_spread_ms),
            ..BackoffPolicy::default()
        },
        // Validated: at most MAX_BROKER_ENDPOINTS.
        endpoints: config.endpoint_count() as u8,
        first_endpoint: config.first_endpoint(),
        status_refresh: Duration::from_secs(config.cloud.status_refresh_secs),
    }
}

struct Driver<'a> {
    config: &'a Config,
    serial: Serial,
    client: AsyncClient,
    mqtt: MqttTask,
    link: Link,
    shared: &'a Rc<SharedService>,
    rng: SystemRandom,
    started: Instant,
    next_network_check: Option<Instant>,
    last_facts_read: Option<Instant>,
    /// The network facts being read (it may wait for DNS), at most one.
    facts_check: Option<FactsCheck<'a>>,
    /// The error that ended the last connection, for the log.
    connection_error: Option<ConnectionError>,
    /// The TLS configuration, re-read before each connection attempt.
    tls: Option<TlsSource>,
    /// Certificate renewal (with TLS only).
    renewal: Option<CertificateRenewal>,
    reload: Reload,
}

impl<'a> Driver<'a> {
    async fn run(&mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut shutting_down = false;
        loop {
            self.follow_platform_access();
            self.carry_out_link();
            if self.link.is_stopped() {
                return;
            }
            self.ask_time_if_due();
            self.renew_if_due();
            self.hand_over();
            self.check_network_if_due();
            let wake = self.next_wakeup();
            tokio::select! {
                biased;
                _ = &mut shutdown, if !shutting_down => {
                    shutting_down = true;
                    if self.link.is_connected() {
                        info!("shutting down: marking the device offline");
                    }
                    self.link.close(self.millis());
                }
                event = self.mqtt.next() => match event {
                    Some(event) => {
                        if let Some(planned) = self.on_mqtt(event) {
                            // The revocation notices go out before the
                            // state's write to flash holds the thread.
                            tokio::task::yield_now().await;
                            self.commit(planned);
                        }
                    }
                    // The task ended (it never does on its own).
                    None => self.link.close(self.millis()),
                },
                _ = self.shared.changed.notified() => {}
                _ = self.reload.hangup() => self.reload_config(),
                facts = poll_facts(&mut self.facts_check) => {
                    self.facts_check = None;
                    if let (Some(facts), true) = (facts, self.link.is_connected()) {
                        let now = self.shared.now();
                        self.shared.agent.borrow_mut().observe_network(facts, now);
                    }
                }
                _ = tokio::time::sleep_until(wake) => self.on_timer(),
            }
        }
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn random(&self) -> u32 {
        random_u32(&self.rng)
    }

    /// The device admin's switch, as the agent holds it, opens or closes
    /// the link.
    fn follow_platform_access(&mut self) {
        let wanted = self.shared.agent.borrow().platform_access();
        if wanted != self.link.is_enabled() && !self.link.is_stopped() {
            if wanted {
                info!("platform access is on: opening the cloud link");
            } else {
                info!("platform access is off: closing the cloud link");
            }
            self.link.set_enabled(wanted, self.millis());
        }
    }

    /// Starts a read of the network facts when the periodic check is due,
    /// or a domain registration is (a retry or a refresh).
    fn check_network_if_due(&mut self) {
        if !self.link.is_connected() || self.facts_check.is_some() {
            return;
        }
        let now = Instant::now();
        let periodic = self.next_network_check.is_some_and(|at| now >= at);
        let device_now = self.shared.now();
        let registration = self
            .shared
            .agent
            .borrow()
            .registration_due_at()
            .is_some_and(|at| at <= device_now)
            && self
                .last_facts_read
                .is_none_or(|at| now >= at + FACTS_RETRY);
        if periodic || registration {
            let interval = Duration::from_secs(self.config.domain.check_interval_secs.max(1));
            self.next_network_check = Some(now + interval);
            self.last_facts_read = Some(now);
            self.facts_check = Some(Box::pin(net_facts::read(self.config)));
        }
    }

    fn next_wakeup(&self) -> Instant {
        let now = Instant::now();
        let reading = self.shared.clocks.read();
        let agent = self.shared.agent.borrow();
        // Deadlines in device time (signed time, or the wall clock without
        // it) have a resolution of one second, and a due one that cannot
        // be met yet (flash failing) must not spin.
        let device_ms = agent.now_ms(reading);
        let device_secs = device_ms / 1000;
        let at_wall = |at: u64| now + Duration::from_secs(at.saturating_sub(device_secs).max(1));
        let link = self
            .link
            .poll_timeout()
            .map(|ms| self.started + Duration::from_millis(ms));
        let checkpoint = agent.next_clock_checkpoint().map(at_wall);
        let connected = self.link.is_connected() && self.facts_check.is_none();
        let registration = agent.registration_due_at().filter(|_| connected).map(|at| {
            let earliest = self.last_facts_read.map(|read| read + FACTS_RETRY);
            at_wall(at).max(earliest.unwrap_or(now))
        });
        let network = self.next_network_check.filter(|_| connected);
        // A watched session ends at its grant's end to the millisecond.
        let watch = agent.next_watch_deadline(device_secs).map(|at| {
            now + Duration::from_millis(at.saturating_mul(1000).saturating_sub(device_ms))
        });
        let time_request = agent
            .time_request_due_at()
            .filter(|_| self.link.is_connected())
            .map(|at| now + Duration::from_millis(at.saturating_sub(reading.mono_ms)));
        let renewal = self
            .renewal
            .as_ref()
            .and_then(CertificateRenewal::poll_timeout)
            .map(at_wall);
        [
            link,
            checkpoint,
            registration,
            network,
            watch,
            time_request,
            renewal,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now + LONGEST_SLEEP)
        .min(now + LONGEST_SLEEP)
    }

    fn on_timer(&mut self) {
        let random = self.random();
        self.link.handle_timeout(self.millis(), random);
        let now = self.shared.now();
        self.shared.agent.borrow_mut().observe_clock(now);
        self.shared.revoke_denied(now);
    }
}

/// A random number for backoff jitter and the like.
pub(crate) fn random_u32(rng: &SystemRandom) -> u32 {
    let mut bytes = [0u8; 4];
    // The kernel's random source failing leaves zero: less jitter, no harm.
    let _ = rng.fill(&mut bytes);
    u32::from_le_bytes(bytes)
}

async fn poll_facts(check: &mut Option<FactsCheck<'_>>) -> Option<NetworkFacts> {
    match check {
        Some(check) => check.await,
        None => std::future::pending().await,
    }
}
