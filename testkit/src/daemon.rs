//! End-to-end harness for the daemon: a generated PKI, the embedded TLS
//! broker, the real `hc-agent` binary as a child process with a config in a
//! temp dir, and a test "cloud" MQTT client that signs commands.
#![allow(dead_code)]

// Added for the fault, bad-input and TLS suites (faults.rs, bad_input.rs,
// tls_refusals.rs); nothing above changes for the other tests.
pub mod cloud;
pub mod config;
pub mod local;
pub mod model;
pub mod proxy;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::command::bind_proof;
use protocol::envelope::CommandSigner;
use protocol::limits::MAX_MESSAGE_BYTES;
use protocol::messages::{DeviceStatus, StateReport};
use protocol::topics::{self, Leaf};
use protocol::{AccountId, AccountRef, Ack, BindRole, Command, CommandBody, Region, Serial};
use rumqttc::{Client, Event, MqttOptions, Packet, Publish, QoS, TlsConfiguration, Transport};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sim_device::broker::{BrokerConfig, EmbeddedBroker};
use sim_device::pki::Pki;

pub const SERIAL: &str = "E2E-NVR-1";
pub const CODE: &str = "ABCDEF";
pub const SEED: [u8; 32] = [7; 32];
pub const WAIT: Duration = Duration::from_secs(10);

/// The agent binary: `HC_AGENT_BIN` when set (a release build, or a QEMU
/// wrapper for a cross build), else the one cargo built for these tests.
pub fn agent_binary() -> &'static str {
    // A runtime HC_AGENT_BIN wins so the same tests can drive a cross-built
    // binary through a QEMU wrapper script (cross/qemu-agent.sh).
    if let Ok(path) = std::env::var("HC_AGENT_BIN") {
        return Box::leak(path.into_boxed_str());
    }
    option_env!("CARGO_BIN_EXE_hc-agent").unwrap_or("target/release/hc-agent")
}

pub fn signer() -> CommandSigner {
    CommandSigner::from_seed(1, &SEED).unwrap()
}

pub fn account(id: &str) -> AccountRef {
    AccountRef {
        id: AccountId::new(id).unwrap(),
        region: Region::new("EU").unwrap(),
    }
}

pub struct Site {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub broker: EmbeddedBroker,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path().join("pki"), &[SERIAL]).unwrap();
        let broker = EmbeddedBroker::start(BrokerConfig::from_pki(&pki)).unwrap();
        Site { dir, pki, broker }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    pub fn ports_file(&self) -> PathBuf {
        self.dir.path().join("ports")
    }

    /// Writes the agent configuration; `extra` is appended to [cloud].
    pub fn write_config(&self, ca: &Path, cloud_extra: &str) -> PathBuf {
        let device = self.pki.device(SERIAL).unwrap();
        let uid = rustix_uid();
        let text = format!(
            r#"serial = "{SERIAL}"
region = "EU"
channels = 8
verification_code = "{CODE}"
state_dir = "{state}"

[cloud]
host = "localhost"
port = {port}
ca = "{ca}"
cert = "{cert}"
key = "{key}"
keep_alive_secs = 5
backoff_base_ms = 100
backoff_cap_ms = 1000
{cloud_extra}

[[command_keys]]
id = 1
public_key = "{public}"

[local_socket]
path = "{socket}"
allowed_uids = [{uid}]
admin_uids = [{uid}]

[domain]
http_port = 80
https_port = 443
rtsp_port = 554
sdk_port = 8000
ports_file = "{ports}"
check_interval_secs = 1
min_interval_secs = 1

[log]
level = "debug"
"#,
            state = self.state_dir().display(),
            port = self.broker.port(),
            ca = ca.display(),
            cert = device.cert.display(),
            key = device.key.display(),
            public = agent::shell::config::encode_hex(&signer().public_key()),
            socket = self.socket().display(),
            ports = self.ports_file().display(),
        );
        let path = self.dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn default_config(&self) -> PathBuf {
        self.write_config(self.pki.ca_cert(), "")
    }

    pub fn start_agent(&self, config: &Path) -> AgentProcess {
        AgentProcess::start(
            Path::new(agent_binary()),
            config,
            &self.dir.path().join("agent.log"),
        )
    }

    pub fn cloud(&self) -> TestCloud {
        TestCloud::connect(&self.pki, self.broker.port())
    }
}

fn rustix_uid() -> u32 {
    // The test runs as the same user as the agent it starts.
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0)
}

pub struct AgentProcess {
    pub child: Child,
    log: PathBuf,
}

impl AgentProcess {
    pub fn start(binary: &Path, config: &Path, log: &Path) -> AgentProcess {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Process::new(binary)
            .arg("--config")
            .arg(config)
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap();
        AgentProcess {
            child,
            log: log.to_owned(),
        }
    }

    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Process::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not stop on SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the agent exits by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- agent log ----\n{}", self.log());
        }
    }
}

pub fn tls_client_config(pki: &Pki, cert: &Path, key: &Path) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(pki.ca_cert()).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap()
}

/// The cloud side of the tests: subscribes to every device topic the
/// device publishes and signs commands.
pub struct TestCloud {
    client: Client,
    rx: mpsc::Receiver<Publish>,
    pub seq: u64,
    signer: CommandSigner,
}

impl TestCloud {
    pub fn connect(pki: &Pki, port: u16) -> TestCloud {
        let cloud = pki.cloud();
        static CLIENTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = CLIENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut options = MqttOptions::new(
            format!("cloud-{}-{id}", std::process::id()),
            "localhost",
            port,
        );
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(512 * 1024, 512 * 1024);
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls_client_config(pki, &cloud.cert, &cloud.key)),
        )));
        let (client, mut connection) = Client::new(options, 256);
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let subscriber = client.clone();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    // Subscribe on every connection: a broker restart may
                    // have lost the session.
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for leaf in [
                            Leaf::Ack,
                            Leaf::State,
                            Leaf::Status,
                            Leaf::Audit,
                            Leaf::DomainRegister,
                        ] {
                            let _ = subscriber
                                .try_subscribe(topics::all_devices(leaf), QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send(p).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        for _ in 0..5 {
            ready_rx
                .recv_timeout(WAIT)
                .expect("cloud client subscribed");
        }
        TestCloud {
            client,
            rx,
            seq: 0,
            signer: signer(),
        }
    }

    pub fn command(&mut self, actor: &str, body: CommandBody) -> Command {
        self.seq += 1;
        Command {
            serial: Serial::new(SERIAL).unwrap(),
            actor: account(actor),
            seq: self.seq,
            issued_at: agent::shell::event_loop::now_secs(),
            body,
        }
    }

    pub fn seal(&self, command: &Command) -> Vec<u8> {
        self.signer.seal(command).unwrap()
    }

    pub fn publish_raw(&self, payload: Vec<u8>) {
        let topic = topics::topic(&Serial::new(SERIAL).unwrap(), Leaf::Command);
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .unwrap();
    }

    pub fn publish_to(&self, leaf: Leaf, payload: Vec<u8>) {
        let topic = topics::topic(&Serial::new(SERIAL).unwrap(), leaf);
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .unwrap();
    }

    /// Signs, publishes and waits for the acknowledgement of `seq`.
    pub fn send(&mut self, actor: &str, body: CommandBody) -> Ack {
        let command = self.command(actor, body);
        self.publish_raw(self.seal(&command));
        self.wait_ack(Some(command.seq))
    }

    pub fn bind_owner(&mut self, owner: &str) -> Ack {
        let proof = bind_proof(
            CODE.as_bytes(),
            &Serial::new(SERIAL).unwrap(),
            &AccountId::new(owner).unwrap(),
        );
        self.send(
            owner,
            CommandBody::Bind {
                role: BindRole::Owner,
                proof,
            },
        )
    }

    /// The next message on `leaf` that `accept` likes.
    pub fn wait_for<T>(
        &self,
        leaf: Leaf,
        within: Duration,
        mut accept: impl FnMut(&Publish) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + within;
        let topic = topics::topic(&Serial::new(SERIAL).unwrap(), leaf);
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let publish = self.rx.recv_timeout(left).ok()?;
            if publish.topic == topic {
                if let Some(value) = accept(&publish) {
                    return Some(value);
                }
            }
        }
    }

    pub fn wait_ack(&self, seq: Option<u64>) -> Ack {
        self.wait_for(Leaf::Ack, WAIT, |p| {
            decode::<Ack>(&p.payload).filter(|a| a.seq == seq)
        })
        .unwrap_or_else(|| panic!("no ack for seq {seq:?}"))
    }

    pub fn wait_status(&self, online: bool, within: Duration) -> bool {
        self.wait_for(Leaf::Status, within, |p| {
            decode::<DeviceStatus>(&p.payload).filter(|s| s.online == online)
        })
        .is_some()
    }

    pub fn wait_state(&self, mut accept: impl FnMut(&StateReport) -> bool) -> StateReport {
        self.wait_for(Leaf::State, WAIT, |p| {
            decode::<StateReport>(&p.payload).filter(|s| accept(s))
        })
        .expect("no matching state report")
    }

    /// Collects every message on `leaf` for `during`.
    pub fn collect(&self, leaf: Leaf, during: Duration) -> Vec<Publish> {
        let mut out = Vec::new();
        let deadline = Instant::now() + during;
        let topic = topics::topic(&Serial::new(SERIAL).unwrap(), leaf);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(p) if p.topic == topic => out.push(p),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        out
    }

    pub fn drain(&self) {
        while self.rx.try_recv().is_ok() {}
    }
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    protocol::codec::decode(bytes, MAX_MESSAGE_BYTES).ok()
}
