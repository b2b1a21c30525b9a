//! The event loop: the one place that reads the clock and does network I/O.
//! A single-threaded tokio runtime runs a `select!` over the MQTT event
//! loop, the local socket, timers and shutdown; events become agent inputs,
//! and the agent's outbox becomes MQTT publishes.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protocol::limits::{MAX_MESSAGE_BYTES, MAX_MQTT_PACKET_BYTES};
use protocol::local::{LinkState, LocalReply, LocalRequest};
use protocol::topics::{self, Leaf};
use ring::rand::{SecureRandom, SystemRandom};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Packet, Publish, QoS,
    TlsConfiguration, Transport,
};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::agent::Agent;
use super::config::Config;
use super::local_server::{self, LocalServerConfig, LocalService};
use super::net_facts;
use super::tls::{self, TlsFiles};
use crate::core::backoff::{Backoff, BackoffPolicy};
use crate::core::domain::{NetworkFacts, Registrar, RegistrarPolicy};
use crate::core::DeviceState;
use crate::store::{Loaded, RealFlash, StateStore};

/// How long shutdown waits for the offline status to leave.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How often the clock is read when nothing else happens.
const TICK: Duration = Duration::from_secs(1);
/// QoS 1 publishes the MQTT client keeps in flight. Our own publishes are
/// kept below it (see `room`).
const INFLIGHT: u16 = 32;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(#[from] super::config::ConfigError),
    #[error("TLS: {0}")]
    Tls(#[from] super::tls::TlsError),
    #[error("state store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("local socket {path}: {source}")]
    LocalSocket {
        path: String,
        source: std::io::Error,
    },
}

/// Unix seconds from the device clock.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_u32(rng: &SystemRandom) -> u32 {
    let mut bytes = [0u8; 4];
    // The kernel's random source failing leaves zero: less jitter, no harm.
    let _ = rng.fill(&mut bytes);
    u32::from_le_bytes(bytes)
}

/// Loads the state, or starts a fresh one; a state file written for another
/// serial is not this device's and is not used.
pub fn load_state(
    config: &Config,
    store: &mut StateStore<RealFlash>,
) -> Result<DeviceState, StartError> {
    let identity = config.identity()?;
    let fresh = || {
        DeviceState::new(identity.clone()).map_err(|e| super::config::ConfigError::Invalid {
            key: "serial",
            message: e.to_string(),
        })
    };
    let loaded = match store.load::<DeviceState>()? {
        Loaded::Fresh => {
            info!("no state on flash: first start");
            return Ok(fresh()?);
        }
        Loaded::Main(state) => state,
        Loaded::Recovered { value, problem } => {
            error!(%problem, "state file was damaged; the previous good copy is used");
            value
        }
    };
    if loaded.identity.serial != identity.serial {
        error!(stored = %loaded.identity.serial, configured = %identity.serial, "state file belongs to another serial; starting fresh");
        return Ok(fresh()?);
    }
    let mut state = loaded;
    // Region, channels and code come from the configuration, which wins.
    state.identity = identity;
    Ok(state)
}

fn mqtt_options(config: &Config, tls_config: Option<Arc<rustls::ClientConfig>>) -> MqttOptions {
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
    let serial = protocol::Serial::new(&config.serial).ok();
    if let Some(serial) = serial {
        options.set_last_will(LastWill::new(
            topics::topic(&serial, Leaf::Status),
            Agent::<RealFlash>::status_payload(false),
            QoS::AtLeastOnce,
            true,
        ));
    }
    if let Some(tls_config) = tls_config {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls_config,
        )));
    }
    options
}

/// The agent as the local socket server sees it, and the signal that wakes
/// the event loop when a local request changed something it acts on.
struct SharedService {
    agent: RefCell<Agent<RealFlash>>,
    changed: Notify,
    admin_uids: Vec<u32>,
}

impl LocalService for SharedService {
    fn serve(&self, request: LocalRequest, peer_uid: u32) -> LocalReply {
        let changes_link = matches!(request, LocalRequest::SetPlatformAccess { .. });
        let may_switch = self.admin_uids.contains(&peer_uid);
        let reply = self
            .agent
            .borrow_mut()
            .local_request(request, may_switch, now_secs());
        if changes_link {
            self.changed.notify_one();
        }
        reply
    }
}

/// Builds everything from the configuration and runs until `shutdown`
/// completes. Must be called inside a `tokio::task::LocalSet`.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    config.validate()?;
    let tls_config = if config.cloud.insecure_plaintext {
        warn!("INSECURE: the cloud link runs without TLS (insecure_plaintext); tests only");
        None
    } else {
        Some(Arc::new(tls::client_config(&TlsFiles {
            ca: &config.cloud.ca,
            cert: &config.cloud.cert,
            key: &config.cloud.key,
            allow_tls12: config.cloud.allow_tls12,
        })?))
    };
    let mut store = StateStore::new(RealFlash, config.state_dir.clone(), "state");
    let state = load_state(&config, &mut store)?;
    let keys = config.command_keys()?;
    let registrar = Registrar::new(
        state.access.domain.clone(),
        RegistrarPolicy {
            min_interval_secs: config.domain.min_interval_secs,
            ..RegistrarPolicy::default()
        },
    );
    let serial = state.identity.serial.clone();
    info!(serial = %serial, bound = state.access.binding != protocol::messages::Binding::Unbound, last_seq = state.ledger.last_seq, "agent starting");
    let shared = Rc::new(SharedService {
        agent: RefCell::new(Agent::new(state, store, keys, registrar)),
        changed: Notify::new(),
        admin_uids: config.local_socket.admin_uids.clone(),
    });

    let socket_config = LocalServerConfig {
        path: config.local_socket.path.clone(),
        allowed_uids: config.local_socket.allowed_uids.clone(),
        mode: config.local_socket.mode,
    };
    let listener =
        local_server::bind(&socket_config).map_err(|source| StartError::LocalSocket {
            path: socket_config.path.display().to_string(),
            source,
        })?;
    let server = tokio::task::spawn_local(local_server::serve(
        listener,
        socket_config.allowed_uids.into(),
        shared.clone(),
    ));

    let result = cloud_loop(&config, tls_config, &shared, shutdown).await;
    server.abort();
    let _ = std::fs::remove_file(&config.local_socket.path);
    if let Err(e) = shared.agent.borrow_mut().flush() {
        error!(error = %e, "state could not be written at shutdown");
    }
    info!("agent stopped");
    result
}

async fn cloud_loop(
    config: &Config,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    shared: &Rc<SharedService>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let serial = shared.agent.borrow().state().identity.serial.clone();
    let (client, mut eventloop) = AsyncClient::new(mqtt_options(config, tls_config), 64);
    eventloop.network_options.set_connection_timeout(10);
    // rumqttc writes and flushes each packet on its own: with Nagle's
    // algorithm an acknowledgement could wait ~40 ms for the broker's
    // delayed ACK of the packet before it (measured in docs/PERFORMANCE.md).
    eventloop.network_options.set_tcp_nodelay(true);
    // rumqttc reserves room for 100 events (14 KiB) that the loop below,
    // taking one event at a time, never needs; the queue grows if it must.
    eventloop.state.events = VecDeque::new();
    let rng = SystemRandom::new();
    let mut backoff = Backoff::new(BackoffPolicy {
        base: Duration::from_millis(config.cloud.backoff_base_ms),
        cap: Duration::from_millis(config.cloud.backoff_cap_ms),
        reconnect_spread: Duration::from_millis(config.cloud.reconnect_spread_ms),
        ..BackoffPolicy::default()
    });
    let started = Instant::now();
    let millis = || started.elapsed().as_millis() as u64;
    let mut connected = false;
    let mut polling = true;
    let mut reconnect_at: Option<Instant> = None;
    let mut next_network_check = Instant::now();
    // The network facts being read (it may wait for DNS), at most one.
    let mut facts_check: Option<
        std::pin::Pin<Box<dyn Future<Output = Option<NetworkFacts>> + '_>>,
    > = None;
    let check_interval = Duration::from_secs(config.domain.check_interval_secs.max(1));
    let mut tick = tokio::time::interval(TICK);
    // A link cut without a FIN shows only as silence. rumqttc notices it
    // when a ping stays unanswered at the next ping, up to two keep-alive
    // intervals after the cut; the broker is answering every ping, so
    // silence for 1.5 intervals (the bound MQTT gives the server) is
    // already a dead link.
    let silence_limit = Duration::from_secs(config.cloud.keep_alive_secs) * 3 / 2;
    let mut last_incoming = Instant::now();
    // The broker's QoS 1 messages we handled and still owe a PUBACK, oldest
    // first (see send_pubacks).
    let mut pubacks: VecDeque<Publish> = VecDeque::new();
    // Our publishes in the MQTT client's queue, not yet written.
    let mut queued: usize = 0;
    tokio::pin!(shutdown);

    loop {
        let link_enabled = shared.agent.borrow().platform_access();
        if !link_enabled && polling {
            info!("platform access is off: closing the cloud link");
            if connected {
                let _ = client.try_publish(
                    topics::topic(&serial, Leaf::Status),
                    QoS::AtLeastOnce,
                    true,
                    Agent::<RealFlash>::status_payload(false),
                );
                let _ = client.try_disconnect();
                drain_until_disconnected(&mut eventloop).await;
            }
            connected = false;
            polling = false;
            shared.agent.borrow_mut().set_link(LinkState::Disabled);
        } else if link_enabled && !polling {
            info!("platform access is on: opening the cloud link");
            polling = true;
            reconnect_at = None;
            shared.agent.borrow_mut().set_link(LinkState::Connecting);
        }

        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = shared.changed.notified() => {}
            _ = tick.tick() => {
                let now = now_secs();
                shared.agent.borrow_mut().observe_clock(now);
                if connected && facts_check.is_none() && Instant::now() >= next_network_check {
                    next_network_check = Instant::now() + check_interval;
                    facts_check = Some(Box::pin(read_network_facts(config)));
                }
            }
            facts = async { facts_check.as_mut().expect("guarded").await }, if facts_check.is_some() => {
                facts_check = None;
                if let (Some(facts), true) = (facts, connected) {
                    shared.agent.borrow_mut().observe_network(facts, now_secs());
                }
            }
            _ = sleep_until(reconnect_at), if reconnect_at.is_some() => {
                reconnect_at = None;
            }
            _ = tokio::time::sleep_until(last_incoming + silence_limit), if connected => {
                eventloop.clean();
                connected = false;
                pubacks.clear();
                backoff.on_disconnected(millis());
                let delay = backoff.on_connect_failed(random_u32(&rng));
                warn!(silent_ms = last_incoming.elapsed().as_millis() as u64, retry_in_ms = delay.as_millis() as u64, "cloud link lost: nothing from the broker for 1.5 keep-alive intervals");
                let mut agent = shared.agent.borrow_mut();
                agent.set_link(LinkState::Connecting);
                agent.registrar().on_disconnected();
                reconnect_at = Some(Instant::now() + delay);
            }
            event = eventloop.poll(), if polling && reconnect_at.is_none() => {
                if let Ok(Event::Incoming(_)) = &event {
                    last_incoming = Instant::now();
                }
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        info!(session_present = ack.session_present, "connected to the cloud");
                        connected = true;
                        // What the last connection left unacknowledged is
                        // sent again first.
                        queued = eventloop.pending.iter().filter(|r| matches!(r, rumqttc::Request::Publish(_))).count() + 1;
                        backoff.on_connected(millis());
                        subscribe(&client, &serial);
                        let _ = client.try_publish(topics::topic(&serial, Leaf::Status), QoS::AtLeastOnce, true, Agent::<RealFlash>::status_payload(true));
                        let mut agent = shared.agent.borrow_mut();
                        agent.set_link(LinkState::Connected);
                        agent.queue_state_report();
                        agent.registrar().on_connected();
                        next_network_check = Instant::now();
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let now = now_secs();
                        match topics::parse(&publish.topic) {
                            Some((s, Leaf::Command)) if s == serial => shared.agent.borrow_mut().on_command(&publish.payload, now),
                            Some((s, Leaf::DomainResult)) if s == serial => shared.agent.borrow_mut().on_domain_result(&publish.payload, now, random_u32(&rng)),
                            _ => warn!(topic = %publish.topic, "message on an unexpected topic ignored"),
                        }
                        // Queue our answers before the broker's acknowledgement,
                        // so a lost connection redelivers rather than loses.
                        let mut handled = publish;
                        handled.payload = Default::default();
                        pubacks.push_back(handled);
                        queued += drain_outbox(&client, &shared.agent, room(&eventloop, queued));
                        send_pubacks(&client, &mut pubacks);
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => {
                        queued = queued.saturating_sub(1);
                        debug!(pkid, "mqtt publish written");
                    }
                    Ok(other) => debug!(event = ?other, "mqtt"),
                    Err(e) => {
                        let was_connected = connected;
                        connected = false;
                        // The broker redelivers what this connection did
                        // not acknowledge.
                        pubacks.clear();
                        if was_connected {
                            backoff.on_disconnected(millis());
                        }
                        let delay = backoff.on_connect_failed(random_u32(&rng));
                        log_connection_error(&e, was_connected, delay);
                        let mut agent = shared.agent.borrow_mut();
                        agent.set_link(LinkState::Connecting);
                        agent.registrar().on_disconnected();
                        reconnect_at = Some(Instant::now() + delay);
                    }
                }
            }
        }
        if connected {
            queued += drain_outbox(&client, &shared.agent, room(&eventloop, queued));
            send_pubacks(&client, &mut pubacks);
        }
    }

    if connected {
        info!("shutting down: marking the device offline");
        let _ = client.try_publish(
            topics::topic(&serial, Leaf::Status),
            QoS::AtLeastOnce,
            true,
            Agent::<RealFlash>::status_payload(false),
        );
        let _ = client.try_disconnect();
        let _ =
            tokio::time::timeout(SHUTDOWN_GRACE, drain_until_disconnected(&mut eventloop)).await;
    }
    Ok(())
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

fn subscribe(client: &AsyncClient, serial: &protocol::Serial) {
    for leaf in Leaf::ALL.into_iter().filter(|l| l.is_inbound()) {
        if let Err(e) = client.try_subscribe(topics::topic(serial, leaf), QoS::AtLeastOnce) {
            error!(error = %e, ?leaf, "subscribe could not be queued");
        }
    }
}

/// How many more of our publishes the MQTT client may take. It stops
/// sending anything, PUBACKs included, while `INFLIGHT` publishes await the
/// broker's acknowledgement; a broker that in turn holds its
/// acknowledgements back until it gets ours (rumqttd does, once its own
/// window towards the device is full) would then wait forever. So our
/// publishes, queued or in flight, stay below that limit, with room for the
/// online status.
fn room(eventloop: &EventLoop, queued: usize) -> usize {
    usize::from(INFLIGHT - 2).saturating_sub(usize::from(eventloop.state.inflight()) + queued)
}

/// Hands up to `room` queued messages to the MQTT client while it has room;
/// what does not fit stays queued for the next round. Returns how many.
fn drain_outbox(client: &AsyncClient, agent: &RefCell<Agent<RealFlash>>, room: usize) -> usize {
    let mut agent = agent.borrow_mut();
    let serial = agent.state().identity.serial.clone();
    let mut handed = 0;
    while let Some(message) = agent.outbox().peek().filter(|_| handed < room) {
        let topic = topics::topic(&serial, message.leaf);
        match client.try_publish(
            topic,
            QoS::AtLeastOnce,
            message.leaf.is_retained(),
            message.payload.clone(),
        ) {
            Ok(()) => {
                agent.outbox().sent();
                handed += 1;
            }
            Err(_) => break,
        }
    }
    handed
}

/// Acknowledges handled messages to the broker, in order, as far as the
/// MQTT client's queue has room; the rest is retried on the next round.
/// A message is handled, and its answers are in the outbox (which outlives
/// the connection), before it gets here. A PUBACK must never be dropped:
/// the broker redelivers an unacknowledged message only on a new connection
/// and keeps it in the connection's in-flight window meanwhile; once the
/// window is full it delivers nothing more while pings keep the connection
/// up, and the device would stop receiving commands.
fn send_pubacks(client: &AsyncClient, pubacks: &mut VecDeque<Publish>) {
    while let Some(publish) = pubacks.front() {
        if client.try_ack(publish).is_err() {
            break;
        }
        pubacks.pop_front();
    }
}

async fn drain_until_disconnected(eventloop: &mut EventLoop) {
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

fn log_connection_error(error: &ConnectionError, was_connected: bool, retry_in: Duration) {
    if was_connected {
        warn!(%error, retry_in_ms = retry_in.as_millis() as u64, "cloud link lost");
    } else {
        warn!(%error, retry_in_ms = retry_in.as_millis() as u64, "cloud connection failed");
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
