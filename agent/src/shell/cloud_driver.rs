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
use std::sync::Arc;
use std::time::Duration;

use protocol::limits::{MAX_MESSAGE_BYTES, MAX_MQTT_PACKET_BYTES};
use protocol::topics::{self, Leaf};
use protocol::Serial;
use ring::rand::{SecureRandom, SystemRandom};
use rumqttc::{
    AsyncClient, ConnectionError, Event, LastWill, MqttOptions, Outgoing, Packet, Publish, QoS,
    TlsConfiguration, Transport,
};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::agent::Agent;
use super::config::Config;
use super::event_loop::{now_secs, SharedService};
use super::mqtt_task::{MqttEvent, MqttTask};
use super::net_facts;
use crate::core::backoff::BackoffPolicy;
use crate::core::domain::NetworkFacts;
use crate::core::link::{Link, LinkEvent, LinkPolicy, LossCause, Transmit};
use crate::store::RealFlash;

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
pub(crate) async fn drive(
    config: &Config,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    shared: &Rc<SharedService>,
    shutdown: impl Future<Output = ()>,
) {
    let serial = shared.agent.borrow().state().identity.serial.clone();
    let (client, mut eventloop) =
        AsyncClient::new(mqtt_options(config, &serial, tls_config), CLIENT_QUEUE);
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
        mqtt: MqttTask::spawn(eventloop),
        link: Link::new(link_policy(config), enabled, 0),
        shared,
        rng: SystemRandom::new(),
        started,
        next_network_check: None,
        last_facts_read: None,
        facts_check: None,
        connection_error: None,
    };
    if !enabled {
        info!("platform access is off: the cloud link stays closed");
    }
    driver.run(shutdown).await;
}

fn link_policy(config: &Config) -> LinkPolicy {
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
    }
}

fn mqtt_options(
    config: &Config,
    serial: &Serial,
    tls_config: Option<Arc<rustls::ClientConfig>>,
) -> MqttOptions {
    let mut options = MqttOptions::new(
        config.serial.clone(),
        config.cloud.host.clone(),
        config.cloud.port,
    );
    options.set_keep_alive(Duration::from_secs(config.cloud.keep_alive_secs));
    options.set_clean_session(false);
    options.set_manual_acks(true);
    options.set_max_packet_size(MAX_MQTT_PACKET_BYTES, MAX_MESSAGE_BYTES + 512);
    options.set_inflight(INFLIGHT);
    options.set_last_will(LastWill::new(
        topics::topic(serial, Leaf::Status),
        Agent::<RealFlash>::status_payload(false),
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(tls_config) = tls_config {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls_config,
        )));
    }
    options
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
                    Some(event) => self.on_mqtt(event),
                    // The task ended (it never does on its own).
                    None => self.link.close(self.millis()),
                },
                _ = self.shared.changed.notified() => {}
                facts = poll_facts(&mut self.facts_check) => {
                    self.facts_check = None;
                    if let (Some(facts), true) = (facts, self.link.is_connected()) {
                        self.shared.agent.borrow_mut().observe_network(facts, now_secs());
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
        let mut bytes = [0u8; 4];
        // The kernel's random source failing leaves zero: less jitter, no harm.
        let _ = self.rng.fill(&mut bytes);
        u32::from_le_bytes(bytes)
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

    /// Carries out what the link asks for and reports what happened.
    fn carry_out_link(&mut self) {
        while let Some(transmit) = self.link.poll_transmit() {
            match transmit {
                Transmit::Connect { attempt } => {
                    debug!(attempt, "connecting to the cloud");
                    self.mqtt.connect(attempt);
                }
                Transmit::Abort { attempt } => {
                    debug!(attempt, "connection dropped");
                    self.mqtt.abort();
                }
                Transmit::Subscribe => self.subscribe(),
                Transmit::Status { online } => {
                    let _ = self.client.try_publish(
                        topics::topic(&self.serial, Leaf::Status),
                        QoS::AtLeastOnce,
                        true,
                        Agent::<RealFlash>::status_payload(online),
                    );
                }
                Transmit::Disconnect => {
                    let _ = self.client.try_disconnect();
                }
            }
        }
        while let Some(event) = self.link.poll_event() {
            self.on_link_event(event);
        }
        self.shared.agent.borrow_mut().set_link(self.link.state());
    }

    fn on_link_event(&mut self, event: LinkEvent) {
        let error = self.connection_error.take();
        let error = error.as_ref().map(|e| e as &dyn std::error::Error);
        let mut agent = self.shared.agent.borrow_mut();
        match event {
            LinkEvent::Connected { session_present } => {
                info!(session_present, "connected to the cloud");
                agent.queue_state_report();
                agent.registrar().on_connected();
                self.next_network_check = Some(Instant::now());
            }
            LinkEvent::ConnectFailed {
                timed_out,
                retry_in,
            } => {
                let retry_in_ms = retry_in.as_millis() as u64;
                if timed_out {
                    warn!(
                        timeout_secs = self.config.cloud.connect_timeout_secs,
                        retry_in_ms, "cloud connection failed: no answer in time"
                    );
                } else {
                    warn!(error, retry_in_ms, "cloud connection failed");
                }
            }
            LinkEvent::Lost { cause, retry_in } => {
                let retry_in_ms = retry_in.as_millis() as u64;
                match cause {
                    LossCause::Error => warn!(error, retry_in_ms, "cloud link lost"),
                    LossCause::Silent => warn!(retry_in_ms, "cloud link lost: nothing from the broker for 1.5 keep-alive intervals"),
                    LossCause::TooManyUnacked => warn!(retry_in_ms, "cloud link lost: the broker sent more unacknowledged messages than the device holds"),
                }
                agent.registrar().on_disconnected();
            }
            LinkEvent::Closed => {
                info!("cloud link closed");
                agent.registrar().on_disconnected();
            }
        }
    }

    fn subscribe(&self) {
        for leaf in Leaf::ALL.into_iter().filter(|l| l.is_inbound()) {
            if let Err(e) = self
                .client
                .try_subscribe(topics::topic(&self.serial, leaf), QoS::AtLeastOnce)
            {
                error!(error = %e, ?leaf, "subscribe could not be queued");
            }
        }
    }

    fn on_mqtt(&mut self, event: MqttEvent) {
        let (now, attempt) = (self.millis(), event.attempt);
        self.link.handle_inflight(attempt, event.inflight);
        match event.event {
            Ok(Event::Incoming(packet)) => {
                self.link.handle_incoming(attempt, now);
                match packet {
                    Packet::ConnAck(ack) => self.link.handle_connack(
                        attempt,
                        ack.session_present,
                        event.pending_publishes,
                        now,
                    ),
                    Packet::Publish(publish) => {
                        self.on_publish(&publish);
                        if publish.qos != QoS::AtMostOnce {
                            let random = self.random();
                            self.link
                                .handle_delivery(attempt, publish.pkid, now, random);
                        }
                    }
                    other => debug!(packet = ?other, "mqtt"),
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                self.link.handle_written(attempt);
                debug!(pkid, "mqtt publish written");
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                self.link.handle_disconnect_written(attempt)
            }
            Ok(Event::Outgoing(_)) => {}
            Err(e) => {
                self.connection_error = Some(e);
                let random = self.random();
                self.link.handle_error(attempt, now, random);
            }
        }
    }

    /// A message from the broker; its answers are queued in the outbox
    /// (which outlives the connection) before its PUBACK is owed, so a lost
    /// connection redelivers rather than loses.
    fn on_publish(&self, publish: &Publish) {
        let now = now_secs();
        let mut agent = self.shared.agent.borrow_mut();
        match topics::parse(&publish.topic) {
            Some((s, Leaf::Command)) if s == self.serial => agent.on_command(&publish.payload, now),
            Some((s, Leaf::DomainResult)) if s == self.serial => {
                agent.on_domain_result(&publish.payload, now, self.random())
            }
            _ => warn!(topic = %publish.topic, "message on an unexpected topic ignored"),
        }
    }

    /// Hands queued messages, then owed acknowledgements, to the MQTT
    /// client as far as the link allows; the rest waits for the next round.
    fn hand_over(&mut self) {
        let mut agent = self.shared.agent.borrow_mut();
        let room = self.link.publish_room();
        let mut handed = 0;
        while let Some(message) = agent.outbox().peek().filter(|_| handed < room) {
            let topic = topics::topic(&self.serial, message.leaf);
            let retained = message.leaf.is_retained();
            let payload = message.payload.clone();
            if self
                .client
                .try_publish(topic, QoS::AtLeastOnce, retained, payload)
                .is_err()
            {
                break;
            }
            agent.outbox().sent();
            handed += 1;
        }
        self.link.handed(handed);
        while let Some(pkid) = self.link.next_puback() {
            let mut ack = Publish::new("", QoS::AtLeastOnce, Vec::new());
            ack.pkid = pkid;
            if self.client.try_ack(&ack).is_err() {
                break;
            }
            self.link.puback_handed();
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
        let registration = self
            .shared
            .agent
            .borrow()
            .registration_due_at()
            .is_some_and(|at| at <= now_secs())
            && self
                .last_facts_read
                .is_none_or(|at| now >= at + FACTS_RETRY);
        if periodic || registration {
            let interval = Duration::from_secs(self.config.domain.check_interval_secs.max(1));
            self.next_network_check = Some(now + interval);
            self.last_facts_read = Some(now);
            self.facts_check = Some(Box::pin(read_network_facts(self.config)));
        }
    }

    fn next_wakeup(&self) -> Instant {
        let now = Instant::now();
        let wall = now_secs();
        // Wall-clock deadlines have a resolution of one second, and a due
        // one that cannot be met yet (flash failing) must not spin.
        let at_wall = |at: u64| now + Duration::from_secs(at.saturating_sub(wall).max(1));
        let agent = self.shared.agent.borrow();
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
        [link, checkpoint, registration, network]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + LONGEST_SLEEP)
            .min(now + LONGEST_SLEEP)
    }

    fn on_timer(&mut self) {
        let random = self.random();
        self.link.handle_timeout(self.millis(), random);
        self.shared.agent.borrow_mut().observe_clock(now_secs());
    }
}

async fn poll_facts(check: &mut Option<FactsCheck<'_>>) -> Option<NetworkFacts> {
    match check {
        Some(check) => check.await,
        None => std::future::pending().await,
    }
}

async fn read_network_facts(config: &Config) -> Option<NetworkFacts> {
    let lan_address =
        match net_facts::lan_address_towards(&config.cloud.host, config.cloud.port).await {
            Ok(address) => address,
            Err(e) => {
                warn!(error = %e, "LAN address unknown; domain registration waits");
                return None;
            }
        };
    let defaults = config.domain.ports();
    let (ports, mappings) = match &config.domain.ports_file {
        None => (defaults, heapless::Vec::new()),
        Some(path) => match net_facts::read_ports_file(path, defaults) {
            Ok(Ok(parsed)) => parsed,
            Ok(Err(e)) => {
                warn!(file = %path.display(), error = %e, "ports file is invalid; using the configured ports");
                (defaults, heapless::Vec::new())
            }
            Err(e) => {
                warn!(file = %path.display(), error = %e, "ports file unreadable; using the configured ports");
                (defaults, heapless::Vec::new())
            }
        },
    };
    Some(NetworkFacts {
        lan_address,
        ports,
        mappings,
    })
}
