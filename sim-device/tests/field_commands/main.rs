//! The field-engineer commands, run as the built `sim-device` binary (so the
//! command line is what is tested) against the embedded TLS broker and
//! simulated recorders running the real agent: status shows the access
//! list, the cloud service switch for one device and for a whole site,
//! share and unshare, and the clear offline error. Each effect is checked
//! on the device itself, through its local socket, not only in the
//! command's output. The site switch also runs on mosquitto (per-device
//! ACL); without mosquitto that test is skipped with a printed reason,
//! unless the environment variable `CI` is set: then it fails.

mod flows;
mod nats;
mod offline;
mod service;
mod sharing;
mod status;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hc_protocol::access::{Decision, Principal};
use hc_protocol::codec;
use hc_protocol::limits::MAX_MESSAGE_BYTES;
use hc_protocol::messages::{Binding, DeviceStatus, StateReport};
use hc_protocol::topics::{self, Leaf};
use hc_protocol::{AccountId, AccountRef, DomainName, InstallerGrants, Region, Serial, Text};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sim_device::broker::{BrokerConfig, EmbeddedBroker};
use sim_device::cloud::driver::{command_public_key, load_or_create_seed};
use sim_device::cloud::field::utc;
use sim_device::mosquitto::{skip_without_mosquitto, Mosquitto};
use sim_device::nats::NatsCluster;
use sim_device::pki::Pki;
use sim_device::recorder::{Recorder, RecorderSpec};

/// The code on every simulated recorder's label.
const CODE: &str = "ABCDEF";
/// How long a device's own view may lag behind an acknowledged command
/// (the ack is sent after the change is applied, so this is generous).
const SETTLE: Duration = Duration::from_secs(3);

/// The broker the commands run against.
enum Broker {
    Embedded(EmbeddedBroker),
    Mosquitto(Mosquitto),
    /// The commands run against node 0.
    Nats(NatsCluster),
}

impl Broker {
    fn host(&self) -> &'static str {
        match self {
            Broker::Embedded(b) => b.host(),
            Broker::Mosquitto(m) => m.host(),
            Broker::Nats(c) => c.endpoints()[0].host(),
        }
    }

    fn port(&self) -> u16 {
        match self {
            Broker::Embedded(b) => b.port(),
            Broker::Mosquitto(m) => m.port(),
            Broker::Nats(c) => c.endpoints()[0].port(),
        }
    }
}

/// A broker with its PKI and command key, and the way to run the binary
/// against it.
struct Bench {
    pki: Pki,
    broker: Broker,
    command_key: [u8; 32],
    // Last: the PKI files must outlive the broker and the recorders.
    _dir: tempfile::TempDir,
}

/// What one run of the binary gave.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn succeeded(&self) -> bool {
        self.code == Some(0)
    }
}

impl Bench {
    /// On the embedded broker.
    fn new(serials: &[&str]) -> Bench {
        Self::with_broker(serials, false)
    }

    fn with_broker(serials: &[&str], mosquitto: bool) -> Bench {
        Self::on(serials, |pki| {
            if mosquitto {
                Broker::Mosquitto(Mosquitto::start(pki).expect("mosquitto"))
            } else {
                Broker::Embedded(
                    EmbeddedBroker::start(BrokerConfig::from_pki(pki)).expect("the broker"),
                )
            }
        })
    }

    /// On the broker `start` gives for the bench's PKI.
    fn on(serials: &[&str], start: impl FnOnce(&Pki) -> Broker) -> Bench {
        let dir = tempfile::Builder::new()
            .prefix("sim-field-")
            .tempdir()
            .expect("a temporary directory");
        let pki = Pki::generate(dir.path(), serials).expect("the PKI");
        let seed = load_or_create_seed(pki.dir()).expect("the command key");
        let broker = start(&pki);
        Bench {
            pki,
            broker,
            command_key: command_public_key(&seed),
            _dir: dir,
        }
    }

    fn recorder(&self, serial: &str) -> Recorder {
        self.start(RecorderSpec::new(serial))
    }

    /// A recorder whose configuration and state live in the PKI
    /// directory (`recorders/SERIAL`): it can be stopped and started again
    /// as the same device.
    fn recorder_at_home(&self, serial: &str) -> Recorder {
        let mut spec = RecorderSpec::new(serial);
        spec.home = Some(self.pki.dir().join("recorders").join(serial));
        self.start(spec)
    }

    fn start(&self, spec: RecorderSpec) -> Recorder {
        Recorder::start(
            &self.pki,
            self.broker.host(),
            self.broker.port(),
            self.command_key,
            spec,
        )
        .expect("the recorder starts")
    }

    /// `sim-device ARGS --pki DIR --broker HOST:PORT`.
    fn run(&self, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_sim-device"))
            .args(args)
            .arg("--pki")
            .arg(self.pki.dir())
            .arg("--broker")
            .arg(format!("{}:{}", self.broker.host(), self.broker.port()))
            .output()
            .expect("run sim-device");
        let run = Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        println!(
            "$ sim-device {}\n{}{}",
            args.join(" "),
            run.stdout,
            run.stderr
        );
        run
    }

    /// `run` of a command line split at spaces (no argument holds one).
    fn cli(&self, line: &str) -> Run {
        self.run(&line.split_whitespace().collect::<Vec<_>>())
    }

    /// `ok` of a command line split at spaces.
    fn ok_cli(&self, line: &str) -> Run {
        self.ok(&line.split_whitespace().collect::<Vec<_>>())
    }

    /// Runs a command that must succeed.
    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert!(run.succeeded(), "sim-device {args:?} failed: {run:?}");
        run
    }

    fn bind_installer(&self, serial: &str, installer: &str) {
        let run = self.ok(&[
            "bind",
            "--serial",
            serial,
            "--code",
            CODE,
            "--installer",
            installer,
        ]);
        assert!(run.stdout.contains(&format!("{serial}: bound")), "{run:?}");
    }

    /// A recorder bound to `owner`.
    fn owned_recorder(&self, serial: &str, owner: &str) -> Recorder {
        let recorder = self.recorder(serial);
        self.bind_owner(serial, owner);
        recorder
    }

    /// A recorder in `installer`'s site.
    fn installed_recorder(&self, serial: &str, installer: &str) -> Recorder {
        let recorder = self.recorder(serial);
        self.bind_installer(serial, installer);
        recorder
    }

    /// Registers accounts in the cloud's records (`account add`), each
    /// with its user name as id and an email address `NAME@example.com`.
    fn accounts(&self, names: &[&str]) {
        for name in names {
            let email = format!("{name}@example.com");
            let run = self.ok(&["account", "add", name, "--email", &email]);
            assert!(
                run.stdout.contains(&format!(
                    "account {name}: registered (id {name}, region EU)"
                )),
                "{run:?}"
            );
        }
    }

    fn bind_owner(&self, serial: &str, owner: &str) {
        let run = self.ok(&["bind", "--serial", serial, "--code", CODE, "--owner", owner]);
        assert!(run.stdout.contains(&format!("{serial}: bound")), "{run:?}");
    }
}

/// The usual start: NVR-1 on the embedded broker, owned by alice, and
/// `accounts` registered in the cloud's records.
fn alices_nvr1(accounts: &[&str]) -> (Bench, Recorder) {
    let bench = Bench::new(&["NVR-1"]);
    let nvr1 = bench.owned_recorder("NVR-1", "alice");
    bench.accounts(accounts);
    (bench, nvr1)
}

/// The device's own cloud service switch, from its local socket.
fn cloud_service(recorder: &Recorder) -> bool {
    recorder
        .status()
        .expect("the agent answers its socket")
        .cloud_service
}

/// Waits until the device's own switch is `wanted`; its final value.
fn wait_cloud_service(recorder: &Recorder, wanted: bool) -> bool {
    let deadline = Instant::now() + SETTLE;
    loop {
        let now = cloud_service(recorder);
        if now == wanted || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The accounts the device itself shares with, from its local socket.
fn shared_with(recorder: &Recorder) -> Vec<String> {
    let report = recorder
        .client()
        .and_then(|mut c| Ok(c.list_access()?))
        .expect("the agent lists its access");
    report
        .shares
        .iter()
        .map(|s| s.account.id.to_string())
        .collect()
}

fn cloud(id: &str) -> Principal {
    Principal::Cloud(AccountId::new(id).expect("an account id"))
}

fn line_of<'a>(text: &'a str, serial: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("{serial}: ")))
        .unwrap_or_else(|| panic!("no line for {serial} in:\n{text}"))
}
