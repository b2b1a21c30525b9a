//! An embedded MQTT 3.1.1 broker ([rumqttd] 0.20) for the demo and the
//! tests: mutual TLS with the [`Pki`]'s CA (a client without a certificate
//! from that CA is refused during the handshake), or plaintext for tests
//! only ([`BrokerConfig::insecure_plaintext`]).
//!
//! How it is put together, and why:
//!
//! - rumqttd's own `Broker::start` runs each listener on a thread with a
//!   runtime that never ends, so it cannot be stopped. This module uses
//!   rumqttd's public parts instead: a `Router` (sessions, subscriptions,
//!   retained messages, last wills), spawned once per broker on its own
//!   thread, and a `Server` (the listener and its connections) run on a
//!   thread of ours, on a tokio runtime that [`EmbeddedBroker::stop`] drops:
//!   that closes the listening socket and every connection.
//! - rumqttd's router thread has no way to stop (it holds a sender of its
//!   own channel), so after `stop` it stays parked on an empty channel, with
//!   no socket, until the process ends. Keep `max_connections` small (the
//!   router preallocates per-connection tables) when a test starts many.
//! - rumqttd binds the address it is given and cannot report the port of a
//!   `:0` bind, so port 0 means: bind 127.0.0.1:0 with a std listener, read
//!   the port, close it, and give that port to rumqttd.
//! - With the `verify-client-cert` feature rumqttd takes the subject
//!   Organization (O=) of a client certificate as a tenant id and prefixes
//!   that client's topics with `/tenants/{O}/` (and its client id with
//!   `{O}.`); a certificate without O= has no tenant. The [`Pki`] puts no
//!   O= in any certificate, so devices and the cloud share one topic tree.
//! - rumqttd has no ACL: any client with a valid certificate may publish or
//!   subscribe anywhere. Per-device confinement is tested against mosquitto
//!   ([`crate::mosquitto`]).
//! - Logs: rumqttd logs through `tracing`. The listener thread runs with a
//!   no-op subscriber unless [`BrokerConfig::logs`] is set; the router
//!   thread logs to the process's global subscriber, if there is one.
//!
//! [rumqttd]: https://docs.rs/rumqttd/0.20

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttd::protocol::v4::V4;
use rumqttd::{
    ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings, TlsConfig,
};

use crate::pki::Pki;
use crate::ports::{deref_to_broker_addr, BrokerAddr};

/// How long [`EmbeddedBroker::start`] waits for the port to accept TCP.
const START_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot reserve a port on 127.0.0.1: {0}")]
    NoPort(#[source] std::io::Error),
    #[error("port {port} on 127.0.0.1 is not free: {source}")]
    PortInUse {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS file {0} does not exist")]
    MissingTlsFile(PathBuf),
    #[error("TLS file path {0} is not UTF-8")]
    NonUtf8Path(PathBuf),
    #[error("cannot start the broker thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the broker failed: {0}")]
    Failed(String),
    #[error("the broker did not accept connections on {addr} within {timeout:?}")]
    NotListening { addr: SocketAddr, timeout: Duration },
}

/// Transport security of the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerSecurity {
    /// TLS (1.3 and 1.2) with the broker certificate; every client must
    /// present a certificate issued by `ca`.
    MutualTls {
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
    /// Plain TCP, no authentication at all. Tests only.
    InsecurePlaintext,
}

/// What to start. Build with [`BrokerConfig::from_pki`],
/// [`BrokerConfig::mutual_tls`] or [`BrokerConfig::insecure_plaintext`].
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    pub security: ListenerSecurity,
    /// Largest MQTT packet accepted from a client, in bytes.
    pub max_packet_size: usize,
    /// How many packets are read from one connection per batch.
    pub max_inflight_count: usize,
    /// Connections the router makes room for (preallocated).
    pub max_connections: usize,
    /// Time a new connection has to send CONNECT.
    pub connect_timeout: Duration,
    /// Let rumqttd's listener log to the global `tracing` subscriber.
    pub logs: bool,
}

impl BrokerConfig {
    fn with_security(security: ListenerSecurity) -> BrokerConfig {
        BrokerConfig {
            port: 0,
            security,
            max_packet_size: 256 * 1024,
            max_inflight_count: 100,
            max_connections: 1024,
            connect_timeout: Duration::from_secs(10),
            logs: false,
        }
    }

    /// Mutual TLS with the PKI's CA and broker certificate, on a free port.
    pub fn from_pki(pki: &Pki) -> BrokerConfig {
        Self::mutual_tls(
            pki.ca_cert().to_owned(),
            pki.server().cert.clone(),
            pki.server().key.clone(),
        )
    }

    /// Mutual TLS with explicit files, on a free port.
    pub fn mutual_tls(ca: PathBuf, cert: PathBuf, key: PathBuf) -> BrokerConfig {
        Self::with_security(ListenerSecurity::MutualTls { ca, cert, key })
    }

    /// Plain TCP without any authentication, on a free port. Tests only.
    pub fn insecure_plaintext() -> BrokerConfig {
        Self::with_security(ListenerSecurity::InsecurePlaintext)
    }

    /// The same, on `port` (0: a free one).
    pub fn with_port(mut self, port: u16) -> BrokerConfig {
        self.port = port;
        self
    }

    fn tls(&self) -> Result<Option<TlsConfig>, BrokerError> {
        let ListenerSecurity::MutualTls { ca, cert, key } = &self.security else {
            return Ok(None);
        };
        let mut strings = Vec::with_capacity(3);
        for path in [ca, cert, key] {
            if !path.is_file() {
                return Err(BrokerError::MissingTlsFile(path.clone()));
            }
            let s = path
                .to_str()
                .ok_or_else(|| BrokerError::NonUtf8Path(path.clone()))?;
            strings.push(s.to_owned());
        }
        let [capath, certpath, keypath]: [String; 3] =
            strings.try_into().expect("three paths were pushed");
        Ok(Some(TlsConfig::Rustls {
            capath: Some(capath),
            certpath,
            keypath,
        }))
    }

    fn server_settings(&self, addr: SocketAddr) -> Result<ServerSettings, BrokerError> {
        Ok(ServerSettings {
            name: format!("embedded-{}", addr.port()),
            listen: addr,
            tls: self.tls()?,
            next_connection_delay_ms: 0,
            connections: ConnectionSettings {
                connection_timeout_ms: self.connect_timeout.as_millis().min(u16::MAX as u128)
                    as u16,
                max_payload_size: self.max_packet_size,
                max_inflight_count: self.max_inflight_count,
                auth: None,
                external_auth: None,
                // Publishing to a topic nobody subscribed to yet must work
                // (retained state, persistent sessions).
                dynamic_filters: true,
            },
        })
    }

    fn router_config(&self) -> RouterConfig {
        RouterConfig {
            max_connections: self.max_connections,
            max_outgoing_packet_count: 200,
            // Per-filter commit log: what a persistent session that is
            // offline can still catch up on.
            max_segment_size: 8 * 1024 * 1024,
            max_segment_count: 8,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        }
    }
}

/// Builds a listener bound to the router of one broker. (The router's
/// channel type is not nameable outside rumqttd; the closure hides it.)
type ServerFactory = Arc<dyn Fn(ServerSettings) -> Server<V4> + Send + Sync>;

/// The listener thread and the means to end it.
struct Listener {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running embedded broker. Stops on drop.
pub struct EmbeddedBroker {
    addr: BrokerAddr,
    config: BrokerConfig,
    factory: ServerFactory,
    listener: Option<Listener>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("addr", &self.addr.addr())
            .field("security", &self.config.security)
            .field("running", &self.listener.is_some())
            .finish()
    }
}

impl EmbeddedBroker {
    /// Starts a broker on 127.0.0.1 and returns once its port accepts TCP
    /// connections.
    pub fn start(config: BrokerConfig) -> Result<EmbeddedBroker, BrokerError> {
        let addr = reserve_port(config.port)?;
        // Check the TLS files before spawning anything.
        config.server_settings(addr)?;
        let router_tx = Router::new(0, config.router_config()).spawn();
        let factory: ServerFactory =
            Arc::new(move |settings| Server::new(settings, router_tx.clone(), V4));
        // A free port found by binding and closing it can be taken by
        // another process (or an outgoing connection) before the broker
        // binds it: with any port allowed, try another.
        let attempts = if config.port == 0 { PORT_ATTEMPTS } else { 1 };
        let mut addr = addr;
        let mut attempt = 1;
        loop {
            match spawn_listener(&factory, &config, addr) {
                Ok(listener) => {
                    return Ok(EmbeddedBroker {
                        addr: BrokerAddr::new(addr),
                        config,
                        factory,
                        listener: Some(listener),
                    })
                }
                Err(BrokerError::Failed(_) | BrokerError::NotListening { .. })
                    if attempt < attempts =>
                {
                    attempt += 1;
                    addr = reserve_port(0)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The configuration it was started with (with the port it got).
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// True between `start` and `stop`.
    pub fn is_running(&self) -> bool {
        self.listener.is_some()
    }

    /// Closes the listener and every connection at once (no DISCONNECT, no
    /// last will: as if the broker process died), then listens again on
    /// the same port. Sessions of clients that connected with
    /// `clean_session = false`, their queued QoS 1 messages, and retained
    /// messages survive, as with a broker that persists its state. A client
    /// that connected before and reconnects with the same client id
    /// replaces its old (dead) connection.
    pub fn restart(&mut self) -> Result<(), BrokerError> {
        self.stop_listener();
        let addr = reserve_port(self.addr.port())?;
        self.listener = Some(spawn_listener(&self.factory, &self.config, addr)?);
        Ok(())
    }

    /// Stops listening and closes every connection; the port is free when
    /// this returns. A new broker can then be started on the same port
    /// (with no sessions or retained messages from this one).
    pub fn stop(mut self) {
        self.stop_listener();
    }

    fn stop_listener(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            listener.stop();
        }
    }
}

deref_to_broker_addr!(EmbeddedBroker);

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.stop_listener();
    }
}

/// How many free ports `start` tries when any port will do.
const PORT_ATTEMPTS: u32 = 5;

fn reserve_port(port: u16) -> Result<SocketAddr, BrokerError> {
    crate::ports::reserve(port).map_err(|source| {
        if port == 0 {
            BrokerError::NoPort(source)
        } else {
            BrokerError::PortInUse { port, source }
        }
    })
}

fn spawn_listener(
    factory: &ServerFactory,
    config: &BrokerConfig,
    addr: SocketAddr,
) -> Result<Listener, BrokerError> {
    let settings = config.server_settings(addr)?;
    let mut server = factory(settings);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<String>();
    let quiet = !config.logs;
    let thread = std::thread::Builder::new()
        .name(format!("broker-{}", addr.port()))
        .spawn(move || {
            let run = move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = done_tx.send(format!("cannot build a runtime: {e}"));
                        return;
                    }
                };
                let outcome = runtime.block_on(async move {
                    tokio::select! {
                        result = server.start(LinkType::Remote) => match result {
                            Ok(()) => Some("the listener ended".to_owned()),
                            Err(e) => Some(e.to_string()),
                        },
                        _ = stop_rx => None,
                    }
                });
                if let Some(message) = outcome {
                    let _ = done_tx.send(message);
                }
                // Dropping the runtime drops the listener and every
                // connection task, closing their sockets.
                drop(runtime);
            };
            if quiet {
                tracing::subscriber::with_default(
                    tracing::subscriber::NoSubscriber::default(),
                    run,
                );
            } else {
                run();
            }
        })
        .map_err(BrokerError::Thread)?;
    let listener = Listener {
        stop: Some(stop_tx),
        thread: Some(thread),
    };
    until_listening(listener, &done_rx, addr)
}

/// The listener once `addr` accepts connections; stopped, with why, if its
/// thread reports an end on `done` first or nothing listens in time.
fn until_listening(
    mut listener: Listener,
    done: &mpsc::Receiver<String>,
    addr: SocketAddr,
) -> Result<Listener, BrokerError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(message) = done.try_recv() {
            listener.stop();
            return Err(BrokerError::Failed(message));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            // The bind happens before anything else in the listener, so an
            // error (a port taken in between) would be here by now.
            std::thread::sleep(Duration::from_millis(5));
            if let Ok(message) = done.try_recv() {
                listener.stop();
                return Err(BrokerError::Failed(message));
            }
            return Ok(listener);
        }
        if Instant::now() >= deadline {
            listener.stop();
            return Err(BrokerError::NotListening {
                addr,
                timeout: START_TIMEOUT,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
