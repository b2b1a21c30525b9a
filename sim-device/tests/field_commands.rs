//! The field-engineer commands, run as the built `sim-device` binary (so the
//! command line is what is tested) against the embedded TLS broker and
//! simulated recorders running the real agent: status shows the access
//! list, the cloud service switch for one device and for a whole site,
//! share and unshare, and the clear offline error. Each effect is checked
//! on the device itself, through its local socket, not only in the
//! command's output. The site switch also runs on mosquitto (per-device
//! ACL); without mosquitto that test is skipped with a printed reason,
//! unless the environment variable `CI` is set: then it fails.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::access::{Decision, Principal};
use protocol::codec;
use protocol::limits::MAX_MESSAGE_BYTES;
use protocol::messages::{Binding, DeviceStatus, StateReport};
use protocol::topics::{self, Leaf};
use protocol::{AccountId, AccountRef, DomainName, InstallerGrants, Region, Serial, Text};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sim_device::broker::{BrokerConfig, EmbeddedBroker};
use sim_device::cloud::driver::{command_public_key, load_or_create_seed};
use sim_device::mosquitto::{skip_without_mosquitto, Mosquitto};
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
}

impl Broker {
    fn host(&self) -> &'static str {
        match self {
            Broker::Embedded(b) => b.host(),
            Broker::Mosquitto(m) => m.host(),
        }
    }

    fn port(&self) -> u16 {
        match self {
            Broker::Embedded(b) => b.port(),
            Broker::Mosquitto(m) => m.port(),
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
        let dir = tempfile::Builder::new()
            .prefix("sim-field-")
            .tempdir()
            .expect("a temporary directory");
        let pki = Pki::generate(dir.path(), serials).expect("the PKI");
        let seed = load_or_create_seed(pki.dir()).expect("the command key");
        let broker = if mosquitto {
            Broker::Mosquitto(Mosquitto::start(&pki).expect("mosquitto"))
        } else {
            Broker::Embedded(
                EmbeddedBroker::start(BrokerConfig::from_pki(&pki)).expect("the broker"),
            )
        };
        Bench {
            pki,
            broker,
            command_key: command_public_key(&seed),
            _dir: dir,
        }
    }

    fn recorder(&self, serial: &str) -> Recorder {
        Recorder::start(
            &self.pki,
            self.broker.host(),
            self.broker.port(),
            self.command_key,
            RecorderSpec::new(serial),
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

    fn bind_owner(&self, serial: &str, owner: &str) {
        let run = self.ok(&["bind", "--serial", serial, "--code", CODE, "--owner", owner]);
        assert!(run.stdout.contains(&format!("{serial}: bound")), "{run:?}");
    }
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

// ---------------------------------------------------------------- status

#[test]
fn status_shows_the_binding_switches_and_access_list_of_an_online_device() {
    let bench = Bench::new(&["NVR-1"]);
    let _nvr1 = bench.owned_recorder("NVR-1", "alice");
    bench.ok(&[
        "share",
        "--serial",
        "NVR-1",
        "--to",
        "bob",
        "--permissions",
        "live-view,playback",
        "--channels",
        "1,2",
    ]);

    let run = bench.ok(&["status", "--serial", "NVR-1"]);
    let out = &run.stdout;
    assert!(out.starts_with("NVR-1: online\n"), "{out}");
    assert!(out.contains("binding: owned by alice (EU)"), "{out}");
    assert!(out.contains("cloud service: on"), "{out}");
    let share = out
        .lines()
        .find(|l| l.contains("shared with bob (EU)"))
        .unwrap_or_else(|| panic!("bob is not in the access list:\n{out}"));
    assert!(share.contains("LiveView+Playback"), "{share}");
    assert!(share.contains("channels 1,2"), "{share}");
}

#[test]
fn status_of_a_device_that_never_connected_says_so_and_fails() {
    let bench = Bench::new(&["NVR-1"]);
    let run = bench.run(&["status", "--serial", "NVR-404"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.starts_with("NVR-404: unknown"), "{run:?}");
}

// ---------------------------------------------------------------- service, one device

#[test]
fn service_off_and_on_switches_one_device() {
    let bench = Bench::new(&["NVR-1", "NVR-2"]);
    let nvr1 = bench.recorder("NVR-1");
    let nvr2 = bench.recorder("NVR-2");
    bench.bind_installer("NVR-1", "acme");
    bench.bind_installer("NVR-2", "acme");
    assert!(cloud_service(&nvr1));

    let run = bench.ok(&["service", "off", "--serial", "NVR-1"]);
    assert_eq!(run.stdout.trim(), "NVR-1: cloud service off");
    assert!(!wait_cloud_service(&nvr1, false), "NVR-1 is still on");
    assert!(cloud_service(&nvr2), "NVR-2 was not named and stays on");
    let status = bench.ok(&["status", "--serial", "NVR-1"]);
    assert!(
        status.stdout.contains("cloud service: off"),
        "the device's report shows the switch: {status:?}"
    );

    bench.ok(&["service", "on", "--serial", "NVR-1"]);
    assert!(wait_cloud_service(&nvr1, true), "NVR-1 is still off");
}

// ---------------------------------------------------------------- service, a site

#[test]
fn service_for_a_site_reaches_every_device_of_the_site_and_names_the_offline_one() {
    site_switch(&Bench::new(&["NVR-1", "NVR-2", "NVR-3", "NVR-4"]));
}

#[test]
fn service_for_a_site_reaches_every_device_of_the_site_on_mosquitto() {
    if skip_without_mosquitto("service_for_a_site_reaches_every_device_of_the_site_on_mosquitto") {
        return;
    }
    site_switch(&Bench::with_broker(
        &["NVR-1", "NVR-2", "NVR-3", "NVR-4"],
        true,
    ));
}

/// Installer acme's site is NVR-1..3, zeta's is NVR-4: switching acme's
/// site switches NVR-1..3 and leaves NVR-4; with NVR-3 stopped, NVR-3 is
/// named as offline and the command fails.
fn site_switch(bench: &Bench) {
    let nvr1 = bench.recorder("NVR-1");
    let nvr2 = bench.recorder("NVR-2");
    let nvr3 = bench.recorder("NVR-3");
    let other = bench.recorder("NVR-4");
    for serial in ["NVR-1", "NVR-2", "NVR-3"] {
        bench.bind_installer(serial, "acme");
    }
    bench.bind_installer("NVR-4", "zeta");

    // The whole site online: every device switched, success.
    let run = bench.ok(&["service", "off", "--site", "acme"]);
    for serial in ["NVR-1", "NVR-2", "NVR-3"] {
        assert_eq!(
            line_of(&run.stdout, serial),
            format!("{serial}: cloud service off")
        );
    }
    assert!(
        !run.stdout.contains("NVR-4"),
        "another installer's device is not in the site: {run:?}"
    );
    assert!(
        run.stdout
            .contains("site of installer acme: 3 devices; 3 switched off, 0 offline, 0 failed"),
        "{run:?}"
    );
    for recorder in [&nvr1, &nvr2, &nvr3] {
        assert!(
            !wait_cloud_service(recorder, false),
            "{} is still on",
            recorder.serial()
        );
    }
    assert!(cloud_service(&other), "NVR-4 (zeta's) stays on");

    // One device of the site goes offline: the others are switched, the
    // offline one is named as offline, and the command fails.
    nvr3.stop().expect("NVR-3 stops");
    let run = bench.run(&["service", "on", "--site", "acme"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(line_of(&run.stdout, "NVR-1"), "NVR-1: cloud service on");
    assert_eq!(line_of(&run.stdout, "NVR-2"), "NVR-2: cloud service on");
    let offline = line_of(&run.stdout, "NVR-3");
    assert!(
        offline.starts_with("NVR-3: device NVR-3 is offline"),
        "{offline}"
    );
    assert!(!run.stdout.contains("Network busy"), "{run:?}");
    assert!(
        run.stdout
            .contains("site of installer acme: 3 devices; 2 switched on, 1 offline, 0 failed"),
        "{run:?}"
    );
    assert!(wait_cloud_service(&nvr1, true), "NVR-1 is still off");
    assert!(wait_cloud_service(&nvr2, true), "NVR-2 is still off");
}

#[test]
fn service_for_an_installer_without_devices_fails_and_sends_nothing() {
    let bench = Bench::new(&["NVR-1"]);
    let nvr1 = bench.installed_recorder("NVR-1", "acme");
    let run = bench.run(&["service", "off", "--site", "nobody"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout
            .contains("no device on this broker names nobody as its installer"),
        "{run:?}"
    );
    assert!(cloud_service(&nvr1), "acme's device was not touched");
}

#[test]
fn service_with_both_site_and_serial_is_a_usage_error() {
    let bench = Bench::new(&["NVR-1"]);
    let run = bench.run(&["service", "off", "--site", "acme", "--serial", "NVR-1"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("not both"), "{run:?}");
}

// ---------------------------------------------------------------- share, unshare

#[test]
fn share_and_unshare_change_the_access_list_on_the_device() {
    let bench = Bench::new(&["NVR-1"]);
    let nvr1 = bench.owned_recorder("NVR-1", "alice");
    assert!(shared_with(&nvr1).is_empty());
    let live_view = |who: &str| {
        nvr1.live_view(&cloud(who), 1)
            .expect("the agent decides")
            .is_allow()
    };
    assert!(!live_view("bob"), "bob has no share yet");

    let run = bench.ok(&["share", "--serial", "NVR-1", "--to", "bob"]);
    assert_eq!(run.stdout.trim(), "NVR-1: Shared");
    bench.ok(&["share", "--serial", "NVR-1", "--to", "carol"]);
    assert_eq!(shared_with(&nvr1), ["bob", "carol"]);
    assert!(live_view("bob"), "bob's share lets him watch");
    let status = bench.ok(&["status", "--serial", "NVR-1"]);
    assert!(status.stdout.contains("shared with bob (EU)"), "{status:?}");
    assert!(
        status.stdout.contains("shared with carol (EU)"),
        "{status:?}"
    );

    let run = bench.ok(&["unshare", "--serial", "NVR-1", "--account", "bob"]);
    assert_eq!(run.stdout.trim(), "NVR-1: deleted");
    assert_eq!(shared_with(&nvr1), ["carol"]);
    assert!(
        matches!(
            nvr1.live_view(&cloud("bob"), 1).expect("the agent decides"),
            Decision::Deny(_)
        ),
        "bob is denied at once"
    );

    bench.ok(&["unshare", "--serial", "NVR-1", "--all"]);
    assert!(shared_with(&nvr1).is_empty());
    let status = bench.ok(&["status", "--serial", "NVR-1"]);
    assert!(status.stdout.contains("shared with nobody"), "{status:?}");
}

// ---------------------------------------------------------------- offline

#[test]
fn an_offline_device_gives_the_clear_offline_error_and_a_non_zero_exit() {
    let bench = Bench::new(&["NVR-1"]);
    let nvr1 = bench.owned_recorder("NVR-1", "alice");
    bench.ok(&["share", "--serial", "NVR-1", "--to", "bob"]);
    nvr1.stop().expect("NVR-1 stops");

    for args in [
        &["share", "--serial", "NVR-1", "--to", "carol"][..],
        &["unshare", "--serial", "NVR-1", "--all"],
        &["service", "off", "--serial", "NVR-1"],
        &[
            "bind", "--serial", "NVR-1", "--code", CODE, "--owner", "dave",
        ],
    ] {
        let run = bench.run(args);
        assert_eq!(run.code, Some(1), "{args:?}: {run:?}");
        assert!(
            run.stdout.starts_with("NVR-1: device NVR-1 is offline"),
            "{args:?}: {run:?}"
        );
        assert!(!run.stdout.contains("Network busy"), "{args:?}: {run:?}");
    }

    // Status still shows the last report (bob's share), flagged offline,
    // and fails like `systemctl status` of a stopped unit.
    let run = bench.run(&["status", "--serial", "NVR-1"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.starts_with("NVR-1: offline"), "{run:?}");
    assert!(run.stdout.contains("its last state report:"), "{run:?}");
    assert!(run.stdout.contains("shared with bob (EU)"), "{run:?}");
}

#[test]
fn an_online_device_that_does_not_answer_is_network_busy() {
    let bench = Bench::new(&["NVR-9"]);
    // A device whose retained status says online (a crash the broker has
    // not noticed yet) and whose agent does not answer commands.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(publish_silent_device(&bench, "NVR-9", "alice"));

    let run = bench.run(&["share", "--serial", "NVR-9", "--to", "bob"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(
        run.stdout.trim(),
        "NVR-9: Network busy: device NVR-9 did not answer within 3 s"
    );
}

// ---------------------------------------------------------------- a silent device

/// The device's TLS identity for a raw MQTT client.
fn device_tls(pki: &Pki, serial: &str) -> rustls::ClientConfig {
    let files = pki.device(serial).expect("the device certificate");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.ca_cert()).expect("read the CA") {
        roots.add(cert.expect("parse the CA")).expect("add the CA");
    }
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .expect("read the certificate")
        .collect::<Result<Vec<_>, _>>()
        .expect("parse the certificate");
    let key = PrivateKeyDer::from_pem_file(&files.key).expect("read the key");
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client identity")
}

fn owned_report(serial: &str, owner: &str) -> StateReport {
    let eu = Region::new("EU").expect("a region");
    StateReport {
        serial: Serial::new(serial).expect("a serial"),
        agent_version: Text::new("0.1.0").expect("a version"),
        region: eu.clone(),
        channel_count: 8,
        binding: Binding::Owned {
            owner: AccountRef {
                id: AccountId::new(owner).expect("an account id"),
                region: eu,
            },
            installer: None,
            installer_grants: InstallerGrants::default(),
        },
        shares: heapless::Vec::new(),
        cloud_service: true,
        platform_access: true,
        domain: DomainName::new(&serial.to_lowercase()).expect("a domain"),
        last_seq: 0,
        trusted_time_floor: 0,
        reports_dropped: 0,
    }
}

/// Publishes, as the device, a retained "online" status and state report,
/// then leaves without a last will: the broker keeps saying online, and
/// nobody answers the device's commands.
async fn publish_silent_device(bench: &Bench, serial: &str, owner: &str) {
    let mut options = MqttOptions::new(serial, bench.broker.host(), bench.broker.port());
    options.set_keep_alive(Duration::from_secs(5));
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(device_tls(&bench.pki, serial)),
    )));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let parsed = Serial::new(serial).expect("a serial");
    let status = codec::encode(&DeviceStatus { online: true }, MAX_MESSAGE_BYTES).expect("encode");
    let report = codec::encode(&owned_report(serial, owner), MAX_MESSAGE_BYTES).expect("encode");
    for (leaf, payload) in [(Leaf::Status, status), (Leaf::State, report)] {
        client
            .publish(
                topics::topic(&parsed, leaf),
                QoS::AtLeastOnce,
                true,
                payload,
            )
            .await
            .expect("queue the publish");
    }
    let acked = tokio::time::timeout(Duration::from_secs(5), async {
        let mut pubacks = 0;
        while pubacks < 2 {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => pubacks += 1,
                Ok(_) => {}
                Err(e) => panic!("the silent device's connection: {e}"),
            }
        }
    })
    .await;
    assert!(
        acked.is_ok(),
        "the broker acknowledged the retained messages"
    );
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
}
