//! `sim-device`: the simulator's command line.
//!
//! ```text
//! sim-device demo [--mosquitto | --nats] [--claim]
//!     The product story against the embedded TLS broker (or mosquitto, or a
//!     three-node NATS cluster), the simulated cloud and one simulated
//!     recorder running the real agent. With --claim the recorder starts
//!     with only its batch's claim certificate and provisions itself first.
//!     Exits non-zero if any outcome differs from what the product promises.
//!
//! sim-device broker --pki DIR [--port P] [--serial S]...
//!     Runs the embedded TLS broker in the foreground (Ctrl-C stops it),
//!     generating the PKI (and device certificates for S...) and the cloud
//!     command key in DIR if they are missing.
//!
//! sim-device recorder --pki DIR [--broker HOST:PORT] --serial S
//!                     [--region R] [--channels N] [--code C] [--dir D]
//!     Runs a simulated recorder (the real agent) in the foreground; its
//!     configuration, state and socket live in D (default DIR/recorders/S).
//!
//! sim-device fleet [--devices N] [--commands K] [--mosquitto | --nats | --embedded |
//!                  --broker HOST:PORT --pki DIR] [--no-restart] [--deadline SECS]
//!                  [--reconnect-spread SECS] [--connect-rate DEVICES-PER-SECOND]
//!     N simulated devices, each with its own TLS session and access list,
//!     against a broker: connect-time percentiles, memory per device, K
//!     signed commands' acknowledgement latency, and the reconnect curve
//!     after restarting the broker (when the fleet started it; on a NATS
//!     cluster, after the SIGKILL of one node, whose devices fail over).
//!
//! Field-engineer commands against a running broker, as the cloud (each
//! also takes [--pki DIR] [--broker HOST:PORT]; WHO is an email address,
//! phone number, user name or account id):
//! sim-device status  --serial S [--serial S]...
//! sim-device service on|off (--serial S [--serial S]... | --site INSTALLER-ID)
//! sim-device account add USER-NAME [--id ID] [--email E] [--phone P] [--region R]
//! sim-device share   --serial S --to WHO [--permissions live-view,playback,...]
//!                    [--channels all|1,2,...] [--hours H] | --domain-only
//! sim-device unshare --serial S (--account WHO... | --all)
//! sim-device leave   --serial S --account WHO
//! sim-device bind    --serial S --code CODE (--installer ID | --owner ID) [--region R]
//! sim-device delete  --serial S
//! sim-device remove-from-owner --serial S
//! sim-device installer grant --serial S --to WHO [--permissions site-info,configuration,
//!                    live-view,playback] [--hours H] [--may-disable]
//! sim-device installer revoke|show --serial S
//! sim-device domain set --serial S --name NAME
//! sim-device domain resolve --name NAME --account WHO
//! sim-device invite  --installer WHO (--email E | --phone P) [--permissions ...]
//!                    [--hours H] [--may-disable] [--remarks TEXT]
//! sim-device resend  --installer WHO
//! sim-device invitations --account WHO
//! sim-device accept  --account WHO [--invitation N]
//! ```
//!
//! `--pki` defaults to `./sim-pki`, `--broker` to `127.0.0.1:8883`.
//! `service --site INSTALLER-ID` switches every device whose retained state
//! report names that installer (docs/SIMULATOR.md). A device whose retained
//! status says offline, or says online but was not refreshed in time (SPEC
//! §2.4), is reported as offline since that status's time at once, without
//! sending.
//! Exit status: 0 done, 1 an operation failed (refused, offline, network
//! busy; for `status`: a device not online), 2 usage or setup error.

mod field;
mod fleet;

use std::path::PathBuf;
use std::process::ExitCode;

use lexopt::prelude::*;
use sim_device::broker::{BrokerConfig, EmbeddedBroker};
use sim_device::cloud::driver::{load_or_create_seed, load_seed};
use sim_device::demo::{self, BrokerKind, DemoOptions};
use sim_device::pki::Pki;
use sim_device::recorder::{Recorder, RecorderSpec};

const USAGE: &str = "\
usage:
  sim-device demo [--mosquitto | --nats] [--claim]
  sim-device broker --pki DIR [--port P] [--serial S]...
  sim-device recorder [--pki DIR] [--broker HOST:PORT] --serial S [--region R] [--channels N] [--code C] [--dir D]
  sim-device fleet [--devices N] [--commands K] [--mosquitto | --nats | --embedded | --broker HOST:PORT --pki DIR]
                   [--no-restart] [--deadline SECS] [--reconnect-spread SECS]
                   [--connect-rate DEVICES-PER-SECOND]
  field-engineer commands (each also takes [--pki DIR] [--broker HOST:PORT];
  WHO is an email address, phone number, user name or account id):
  sim-device status  --serial S [--serial S]...
  sim-device service on|off (--serial S [--serial S]... | --site INSTALLER-ID)
  sim-device account add USER-NAME [--id ID] [--email E] [--phone P] [--region R]
  sim-device share   --serial S --to WHO [--permissions live-view,playback,...]
                     [--channels all|1,2,...] [--hours H] | --domain-only
  sim-device unshare --serial S (--account WHO... | --all)
  sim-device leave   --serial S --account WHO
  sim-device bind    --serial S --code CODE (--installer ID | --owner ID) [--region R]
  sim-device delete  --serial S
  sim-device remove-from-owner --serial S
  sim-device installer grant --serial S --to WHO [--permissions site-info,configuration,
                     live-view,playback] [--hours H] [--may-disable]
  sim-device installer revoke|show --serial S
  sim-device domain set --serial S --name NAME
  sim-device domain resolve --name NAME --account WHO
  sim-device invite  --installer WHO (--email E | --phone P) [--permissions ...]
                     [--hours H] [--may-disable] [--remarks TEXT]
  sim-device resend  --installer WHO
  sim-device invitations --account WHO
  sim-device accept  --account WHO [--invitation N]

--pki defaults to ./sim-pki and --broker to 127.0.0.1:8883. The field-engineer
commands connect as the PKI's `cloud` certificate, sign with its command key
and keep the cloud's records (accounts, sites, invitations, domain
registrations) in DIR/cloud-records.bin between runs. `service --site INSTALLER-ID`
switches every device whose retained state report names that installer.
A device whose retained status says offline, or says online but was not
refreshed in time, fails at once with \"device S is offline since TIME\"; an
online device that does not answer within 3 s gives \"Network busy\". Exit status: 0 done, 1 an operation failed (for status: a device not
online), 2 usage error.
";

/// A usage or setup error: exit status 2.
struct Fatal(String);

impl<E: std::fmt::Display> From<E> for Fatal {
    fn from(e: E) -> Fatal {
        Fatal(e.to_string())
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(Fatal(message)) => {
            eprintln!("sim-device: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode, Fatal> {
    let mut parser = lexopt::Parser::from_env();
    let command = match parser.next()? {
        Some(Value(command)) => command.string()?,
        Some(Long("help") | Short('h')) | None => {
            print!("{USAGE}");
            return Ok(ExitCode::SUCCESS);
        }
        Some(other) => return Err(other.unexpected().into()),
    };
    match command.as_str() {
        "demo" => demo_command(parser),
        "fleet" => fleet::command(parser),
        "broker" => broker_command(parser),
        "recorder" => recorder_command(parser),
        c if field::is_command(c) => field::command(&command, parser),
        "help" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(Fatal(format!("unknown command {other:?}\n{USAGE}"))),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Fatal> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Waits for Ctrl-C or SIGTERM.
fn wait_for_signal() -> Result<(), Fatal> {
    runtime()?.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    Ok(())
}

// ------------------------------------------------------------------ demo

fn demo_command(mut parser: lexopt::Parser) -> Result<ExitCode, Fatal> {
    let mut options = DemoOptions::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("mosquitto") => options.broker = BrokerKind::Mosquitto,
            Long("nats") => options.broker = BrokerKind::Nats,
            Long("embedded") => options.broker = BrokerKind::Embedded,
            Long("claim") => options.claim = true,
            _ => return Err(arg.unexpected().into()),
        }
    }
    let mut out = std::io::stdout();
    let report = demo::run(&options, &mut out)?;
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

// ------------------------------------------------------------------ broker and recorder

fn broker_command(mut parser: lexopt::Parser) -> Result<ExitCode, Fatal> {
    let mut pki_dir: Option<PathBuf> = None;
    let mut port: u16 = 8883;
    let mut serials: Vec<String> = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("pki") => pki_dir = Some(parser.value()?.into()),
            Long("port") => port = parser.value()?.parse()?,
            Long("serial") => serials.push(parser.value()?.string()?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let pki_dir = pki_dir.ok_or_else(|| Fatal("broker: --pki DIR is required".into()))?;
    let refs: Vec<&str> = serials.iter().map(String::as_str).collect();
    let pki = Pki::load_or_generate(&pki_dir, &refs)?;
    let seed = load_or_create_seed(pki.dir())?;
    let broker = EmbeddedBroker::start(BrokerConfig::from_pki(&pki).with_port(port))?;
    println!(
        "embedded MQTT broker (mutual TLS) on 127.0.0.1:{}; PKI and cloud command key in {}",
        broker.port(),
        pki.dir().display()
    );
    println!(
        "cloud command public key (id 1): {}",
        hc_agent::shell::config::encode_hex(&sim_device::cloud::driver::command_public_key(&seed))
    );
    println!("Ctrl-C stops it.");
    wait_for_signal()?;
    broker.stop();
    Ok(ExitCode::SUCCESS)
}

fn parse_broker(text: &str) -> Result<(String, u16), Fatal> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| Fatal(format!("--broker {text:?}: expected HOST:PORT")))?;
    let port = port
        .parse()
        .map_err(|_| Fatal(format!("--broker {text:?}: bad port")))?;
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

fn recorder_command(mut parser: lexopt::Parser) -> Result<ExitCode, Fatal> {
    let mut pki_dir = PathBuf::from("sim-pki");
    let mut broker = "127.0.0.1:8883".to_owned();
    let mut serial: Option<String> = None;
    let mut dir: Option<PathBuf> = None;
    let mut spec = RecorderSpec::new("unset");
    spec.log_level = "info".into();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("pki") => pki_dir = parser.value()?.into(),
            Long("broker") => broker = parser.value()?.string()?,
            Long("serial") => serial = Some(parser.value()?.string()?),
            Long("region") => spec.region = parser.value()?.string()?,
            Long("channels") => spec.channels = parser.value()?.parse()?,
            Long("code") => spec.verification_code = parser.value()?.string()?,
            Long("dir") => dir = Some(parser.value()?.into()),
            _ => return Err(arg.unexpected().into()),
        }
    }
    spec.serial = serial.ok_or_else(|| Fatal("recorder: --serial S is required".into()))?;
    let (host, port) = parse_broker(&broker)?;
    // Absolute paths in the agent configuration it writes.
    let pki_dir = pki_dir
        .canonicalize()
        .map_err(|e| Fatal(format!("{}: {e}", pki_dir.display())))?;
    let mut pki = Pki::load(&pki_dir)?;
    if pki.device(&spec.serial).is_none() {
        pki.add_device(&spec.serial)?;
    }
    let seed = load_seed(&pki_dir)?;
    let dir = dir.unwrap_or_else(|| pki_dir.join("recorders").join(&spec.serial));
    let key = sim_device::cloud::driver::command_public_key(&seed);
    spec.home = Some(dir);
    let recorder = Recorder::start(&pki, &host, port, key, spec)?;
    println!(
        "recorder {} running the agent (config {}, local socket {}); Ctrl-C stops it",
        recorder.serial(),
        recorder.config_path().display(),
        recorder.socket().display()
    );
    wait_for_signal()?;
    recorder.stop()?;
    Ok(ExitCode::SUCCESS)
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
