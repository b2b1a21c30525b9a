//! `sim-device fleet`: its options, the PKI and the broker the fleet runs
//! against (embedded, mosquitto, a three-node NATS cluster, or an
//! external one given by address), and the run printed with its verdict.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lexopt::prelude::*;
use sim_device::broker::{BrokerConfig, EmbeddedBroker};
use sim_device::fleet::{self, FleetOptions};
use sim_device::mosquitto::Mosquitto;
use sim_device::nats::NatsCluster;
use sim_device::pki::Pki;

use crate::{exit, runtime, Fatal};

#[derive(PartialEq)]
enum Where {
    Embedded,
    Mosquitto,
    Nats,
    External,
}

struct FleetArgs {
    options: FleetOptions,
    place: Where,
    broker: Option<String>,
    pki_dir: Option<PathBuf>,
    restart: bool,
}

fn parse(mut parser: lexopt::Parser) -> Result<FleetArgs, Fatal> {
    let mut a = FleetArgs {
        options: FleetOptions::default(),
        place: Where::Embedded,
        broker: None,
        pki_dir: None,
        restart: true,
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("devices") => a.options.devices = parser.value()?.parse()?,
            Long("commands") => a.options.commands = parser.value()?.parse()?,
            Long("deadline") => {
                a.options.connect_deadline = Duration::from_secs(parser.value()?.parse()?)
            }
            Long("mosquitto") => a.place = Where::Mosquitto,
            Long("nats") => a.place = Where::Nats,
            Long("embedded") => a.place = Where::Embedded,
            Long("broker") => {
                a.broker = Some(parser.value()?.string()?);
                a.place = Where::External;
            }
            Long("pki") => a.pki_dir = Some(parser.value()?.into()),
            Long("no-restart") => a.restart = false,
            Long("connect-rate") => a.options.connect_rate = Some(parser.value()?.parse()?),
            Long("reconnect-spread") => {
                a.options.reconnect_spread = Duration::from_secs(parser.value()?.parse()?)
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok(a)
}

pub fn command(parser: lexopt::Parser) -> Result<ExitCode, Fatal> {
    let a = parse(parser)?;
    let options = &a.options;
    if options.devices == 0 {
        return Err(Fatal("--devices must be at least 1".into()));
    }
    let fd_limit = fleet::raise_fd_limit();
    if (fd_limit as usize) < options.devices + 64 {
        return Err(Fatal(format!(
            "{} devices need as many open files; this process may open {fd_limit} (raise the hard limit: ulimit -Hn)",
            options.devices
        )));
    }
    let scratch = tempfile::Builder::new()
        .prefix("sim-fleet-")
        .tempdir()
        .map_err(|e| Fatal(format!("temporary directory: {e}")))?;
    let started = Instant::now();
    let pki = fleet_pki(&a, scratch.path())?;
    println!(
        "fleet: {} devices; PKI ready in {:.1} s",
        options.devices,
        started.elapsed().as_secs_f64()
    );
    let mut broker = FleetBroker::start(&a, &pki)?;
    let target = broker.target.clone();
    let restartable = if a.restart {
        broker.restartable()
    } else {
        None
    };
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
        .map_err(|_| Fatal("no randomness for the command key".into()))?;
    let mut progress = |line: &str| println!("  {line}");
    let report = runtime()?
        .block_on(fleet::run(
            options,
            &pki,
            &target,
            seed,
            restartable,
            &mut progress,
        ))
        .map_err(|e| Fatal(e.to_string()))?;
    let verdict = fleet::verdict(&report);
    print!("{}", verdict.text);
    Ok(exit(verdict.passed))
}

/// The PKI with a device certificate for every fleet serial: the given
/// one (loaded; for a broker started here, generated if missing) or a
/// fresh one in `scratch`.
fn fleet_pki(a: &FleetArgs, scratch: &Path) -> Result<Pki, Fatal> {
    let serial_names = fleet::serials(&a.options);
    let serial_refs: Vec<&str> = serial_names.iter().map(String::as_str).collect();
    let pki = match (&a.place, &a.pki_dir) {
        (Where::External, Some(dir)) => Pki::load(dir).map_err(|e| Fatal(format!("--pki: {e}")))?,
        (Where::External, None) => return Err(Fatal("--broker needs --pki DIR (the broker's PKI, with device certificates for the fleet serials)".into())),
        (_, Some(dir)) => Pki::load_or_generate(dir, &serial_refs).map_err(|e| Fatal(format!("--pki: {e}")))?,
        (_, None) => Pki::generate(scratch, &serial_refs).map_err(|e| Fatal(format!("PKI: {e}")))?,
    };
    let mut pki = pki;
    for serial in &serial_refs {
        if pki.device(serial).is_none() {
            pki.add_device(serial)
                .map_err(|e| Fatal(format!("PKI: {e}")))?;
        }
    }
    Ok(pki)
}

/// The broker the fleet runs against; one started here is kept running
/// (and restartable) for the whole run.
struct FleetBroker {
    started: Started,
    target: fleet::Target,
}

enum Started {
    Embedded(EmbeddedBroker),
    Mosquitto(Mosquitto),
    Nats(NatsCluster),
    External,
}

impl FleetBroker {
    fn start(a: &FleetArgs, pki: &Pki) -> Result<FleetBroker, Fatal> {
        let mut more = Vec::new();
        let (host, port, started) = match a.place {
            Where::Embedded => {
                let b = EmbeddedBroker::start(BrokerConfig::from_pki(pki))
                    .map_err(|e| Fatal(format!("embedded broker: {e}")))?;
                println!("broker: embedded rumqttd on port {}", b.port());
                (String::from(b.host()), b.port(), Started::Embedded(b))
            }
            Where::Mosquitto => {
                let m = Mosquitto::start(pki).map_err(|e| Fatal(format!("mosquitto: {e}")))?;
                println!(
                    "broker: mosquitto on port {} (TLS 1.3, client certificates, per-device ACL)",
                    m.port()
                );
                (String::from(m.host()), m.port(), Started::Mosquitto(m))
            }
            Where::Nats => {
                let started = Instant::now();
                let cluster = NatsCluster::start(pki).map_err(|e| Fatal(format!("NATS: {e}")))?;
                let endpoints = cluster.endpoints();
                let ports: Vec<String> = endpoints.iter().map(|e| e.port().to_string()).collect();
                println!(
                    "broker: NATS cluster of {} nodes, MQTT on ports {} (TLS 1.3, client certificates, per-device permissions, JetStream R{}), ready in {:.1} s",
                    endpoints.len(),
                    ports.join(", "),
                    endpoints.len(),
                    started.elapsed().as_secs_f64()
                );
                more = endpoints[1..]
                    .iter()
                    .map(|e| (e.host().to_owned(), e.port()))
                    .collect();
                (
                    String::from(endpoints[0].host()),
                    endpoints[0].port(),
                    Started::Nats(cluster),
                )
            }
            Where::External => {
                let text = a.broker.clone().unwrap_or_default();
                let (host, port) = text
                    .rsplit_once(':')
                    .ok_or_else(|| Fatal(format!("--broker {text:?}: expected HOST:PORT")))?;
                println!("broker: {text} (not restarted: the fleet did not start it)");
                (host.to_owned(), port.parse()?, Started::External)
            }
        };
        Ok(FleetBroker {
            started,
            target: fleet::Target { host, port, more },
        })
    }

    /// The broker to restart for the reconnect curve: one started here.
    fn restartable(&mut self) -> Option<&mut dyn fleet::Restartable> {
        match &mut self.started {
            Started::Embedded(b) => Some(b),
            Started::Mosquitto(m) => Some(m),
            Started::Nats(cluster) => Some(cluster),
            Started::External => None,
        }
    }
}
