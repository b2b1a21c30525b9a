//! `sim-device`: the simulator's command line.
//!
//! ```text
//! sim-device demo [--mosquitto]
//!     The product story against the embedded TLS broker (or mosquitto), the
//!     simulated cloud and one simulated recorder running the real agent.
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
//! sim-device fleet [--devices N] [--commands K] [--mosquitto | --embedded |
//!                  --broker HOST:PORT --pki DIR] [--no-restart] [--deadline SECS]
//!                  [--reconnect-spread SECS]
//!     N simulated devices, each with its own TLS session and access list,
//!     against a broker: connect-time percentiles, memory per device, K
//!     signed commands' acknowledgement latency, and the reconnect curve
//!     after restarting the broker (when the fleet started it).
//!
//! Field-engineer commands against a running broker, as the cloud:
//! sim-device status  [--pki DIR] [--broker HOST:PORT] --serial S [--serial S]...
//! sim-device service on|off [--pki DIR] [--broker HOST:PORT] (--serial S [--serial S]... | --site INSTALLER-ID)
//! sim-device share   [--pki DIR] [--broker HOST:PORT] --serial S --to ACCOUNT-ID
//!                    [--region R] [--permissions live-view,playback,...]
//!                    [--channels all|1,2,...] [--hours H]
//! sim-device unshare [--pki DIR] [--broker HOST:PORT] --serial S (--account ACCOUNT-ID... | --all)
//! sim-device bind    [--pki DIR] [--broker HOST:PORT] --serial S --code CODE
//!                    (--installer ACCOUNT-ID | --owner ACCOUNT-ID) [--region R]
//! ```
//!
//! `--pki` defaults to `./sim-pki`, `--broker` to `127.0.0.1:8883`.
//! `service --site INSTALLER-ID` switches every device whose retained state
//! report names that installer (docs/SIMULATOR.md). A device whose retained
//! status says offline is reported as offline at once, without sending.
//! Exit status: 0 done, 1 an operation failed (refused, offline, network
//! busy; for `status`: a device not online), 2 usage or setup error.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lexopt::prelude::*;
use protocol::access::Action;
use protocol::{ChannelScope, ChannelSet, Permissions, Validity};
use sim_device::broker::{BrokerConfig, EmbeddedBroker};
use sim_device::cloud::driver::{load_or_create_seed, load_seed, now_secs};
use sim_device::cloud::field::{self, BindAs, Target};
use sim_device::demo::{self, BrokerKind, DemoOptions};
use sim_device::fleet::{self, FleetOptions};
use sim_device::pki::Pki;
use sim_device::recorder::{Recorder, RecorderSpec};

const USAGE: &str = "\
usage:
  sim-device demo [--mosquitto]
  sim-device broker --pki DIR [--port P] [--serial S]...
  sim-device recorder [--pki DIR] [--broker HOST:PORT] --serial S [--region R] [--channels N] [--code C] [--dir D]
  sim-device fleet [--devices N] [--commands K] [--mosquitto | --embedded | --broker HOST:PORT --pki DIR]
                   [--no-restart] [--deadline SECS] [--reconnect-spread SECS]
  sim-device status  [--pki DIR] [--broker HOST:PORT] --serial S [--serial S]...
  sim-device service on|off [--pki DIR] [--broker HOST:PORT] (--serial S [--serial S]... | --site INSTALLER-ID)
  sim-device share   [--pki DIR] [--broker HOST:PORT] --serial S --to ACCOUNT-ID [--region R]
                     [--permissions live-view,playback,...] [--channels all|1,2,...] [--hours H]
  sim-device unshare [--pki DIR] [--broker HOST:PORT] --serial S (--account ACCOUNT-ID... | --all)
  sim-device bind    [--pki DIR] [--broker HOST:PORT] --serial S --code CODE
                     (--installer ACCOUNT-ID | --owner ACCOUNT-ID) [--region R]

--pki defaults to ./sim-pki and --broker to 127.0.0.1:8883. The field-engineer
commands (status, service, share, unshare, bind) connect as the PKI's `cloud`
certificate and sign with its command key. `service --site INSTALLER-ID`
switches every device whose retained state report names that installer.
A device whose retained status says offline fails at once with \"device S is
offline\"; an online device that does not answer within 3 s gives \"Network
busy\". Exit status: 0 done, 1 an operation failed (for status: a device not
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
        "fleet" => fleet_command(parser),
        "broker" => broker_command(parser),
        "recorder" => recorder_command(parser),
        "status" | "service" | "share" | "unshare" | "bind" => field_command(&command, parser),
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
            Long("embedded") => options.broker = BrokerKind::Embedded,
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

// ------------------------------------------------------------------ fleet

fn fleet_command(mut parser: lexopt::Parser) -> Result<ExitCode, Fatal> {
    #[derive(PartialEq)]
    enum Where {
        Embedded,
        Mosquitto,
        External,
    }
    let mut options = FleetOptions::default();
    let mut place = Where::Embedded;
    let mut broker: Option<String> = None;
    let mut pki_dir: Option<PathBuf> = None;
    let mut restart = true;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("devices") => options.devices = parser.value()?.parse()?,
            Long("commands") => options.commands = parser.value()?.parse()?,
            Long("deadline") => {
                options.connect_deadline = Duration::from_secs(parser.value()?.parse()?)
            }
            Long("mosquitto") => place = Where::Mosquitto,
            Long("embedded") => place = Where::Embedded,
            Long("broker") => {
                broker = Some(parser.value()?.string()?);
                place = Where::External;
            }
            Long("pki") => pki_dir = Some(parser.value()?.into()),
            Long("no-restart") => restart = false,
            Long("reconnect-spread") => {
                options.reconnect_spread = Duration::from_secs(parser.value()?.parse()?)
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
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
    let serial_names = fleet::serials(&options);
    let serial_refs: Vec<&str> = serial_names.iter().map(String::as_str).collect();
    let scratch = tempfile::Builder::new()
        .prefix("sim-fleet-")
        .tempdir()
        .map_err(|e| Fatal(format!("temporary directory: {e}")))?;
    let started = Instant::now();
    let pki = match (&place, &pki_dir) {
        (Where::External, Some(dir)) => Pki::load(dir).map_err(|e| Fatal(format!("--pki: {e}")))?,
        (Where::External, None) => return Err(Fatal("--broker needs --pki DIR (the broker's PKI, with device certificates for the fleet serials)".into())),
        (_, Some(dir)) => Pki::load_or_generate(dir, &serial_refs).map_err(|e| Fatal(format!("--pki: {e}")))?,
        (_, None) => Pki::generate(scratch.path(), &serial_refs).map_err(|e| Fatal(format!("PKI: {e}")))?,
    };
    let mut pki = pki;
    for serial in &serial_refs {
        if pki.device(serial).is_none() {
            pki.add_device(serial)
                .map_err(|e| Fatal(format!("PKI: {e}")))?;
        }
    }
    println!(
        "fleet: {} devices; PKI ready in {:.1} s",
        options.devices,
        started.elapsed().as_secs_f64()
    );
    let mut embedded: Option<EmbeddedBroker> = None;
    let mut mosquitto: Option<sim_device::mosquitto::Mosquitto> = None;
    let target = match place {
        Where::Embedded => {
            let b = EmbeddedBroker::start(BrokerConfig::from_pki(&pki))
                .map_err(|e| Fatal(format!("embedded broker: {e}")))?;
            let target = fleet::Target {
                host: b.host().into(),
                port: b.port(),
            };
            embedded = Some(b);
            println!("broker: embedded rumqttd on port {}", target.port);
            target
        }
        Where::Mosquitto => {
            let m = sim_device::mosquitto::Mosquitto::start(&pki)
                .map_err(|e| Fatal(format!("mosquitto: {e}")))?;
            let target = fleet::Target {
                host: m.host().into(),
                port: m.port(),
            };
            mosquitto = Some(m);
            println!(
                "broker: mosquitto on port {} (TLS 1.3, client certificates, per-device ACL)",
                target.port
            );
            target
        }
        Where::External => {
            let text = broker.unwrap_or_default();
            let (host, port) = text
                .rsplit_once(':')
                .ok_or_else(|| Fatal(format!("--broker {text:?}: expected HOST:PORT")))?;
            println!("broker: {text} (not restarted: the fleet did not start it)");
            fleet::Target {
                host: host.into(),
                port: port.parse()?,
            }
        }
    };
    let restartable: Option<&mut dyn fleet::Restartable> = if !restart {
        None
    } else if let Some(b) = embedded.as_mut() {
        Some(b)
    } else if let Some(m) = mosquitto.as_mut() {
        Some(m)
    } else {
        None
    };
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
        .map_err(|_| Fatal("no randomness for the command key".into()))?;
    let mut progress = |line: &str| println!("  {line}");
    let report = runtime()?
        .block_on(fleet::run(
            &options,
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
        agent::shell::config::encode_hex(&sim_device::cloud::driver::command_public_key(&seed))
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
    let recorder = Recorder::start_in(&dir, &pki, &host, port, key, spec)?;
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

// ------------------------------------------------------------------ field-engineer commands

#[derive(Default)]
struct FieldArgs {
    pki: Option<PathBuf>,
    broker: Option<String>,
    serials: Vec<String>,
    site: Option<String>,
    positional: Vec<String>,
    to: Option<String>,
    region: Option<String>,
    permissions: Option<String>,
    channels: Option<String>,
    hours: Option<u64>,
    accounts: Vec<String>,
    all: bool,
    code: Option<String>,
    installer: Option<String>,
    owner: Option<String>,
}

fn parse_field(mut parser: lexopt::Parser) -> Result<FieldArgs, Fatal> {
    let mut a = FieldArgs::default();
    let string = |v: OsString| v.string();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("pki") => a.pki = Some(parser.value()?.into()),
            Long("broker") => a.broker = Some(string(parser.value()?)?),
            Long("serial") => a.serials.push(string(parser.value()?)?),
            Long("site") if a.site.is_some() => {
                return Err(Fatal("service: one --site INSTALLER-ID at a time".into()))
            }
            Long("site") => a.site = Some(string(parser.value()?)?),
            Long("to") => a.to = Some(string(parser.value()?)?),
            Long("region") => a.region = Some(string(parser.value()?)?),
            Long("permissions") => a.permissions = Some(string(parser.value()?)?),
            Long("channels") => a.channels = Some(string(parser.value()?)?),
            Long("hours") => a.hours = Some(parser.value()?.parse()?),
            Long("account") => a.accounts.push(string(parser.value()?)?),
            Long("all") => a.all = true,
            Long("code") => a.code = Some(string(parser.value()?)?),
            Long("installer") => a.installer = Some(string(parser.value()?)?),
            Long("owner") => a.owner = Some(string(parser.value()?)?),
            Value(v) => a.positional.push(string(v)?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok(a)
}

fn one_serial(command: &str, a: &FieldArgs) -> Result<String, Fatal> {
    match a.serials.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Fatal(format!(
            "{command}: exactly one --serial S is required"
        ))),
    }
}

fn parse_permissions(text: &str) -> Result<Permissions, Fatal> {
    let mut actions = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let wanted: String = name.chars().filter(|c| *c != '-' && *c != '_').collect();
        let action = Action::ALL
            .iter()
            .find(|a| a.name().eq_ignore_ascii_case(&wanted))
            .ok_or_else(|| Fatal(format!("--permissions: unknown action {name:?}")))?;
        actions.push(*action);
    }
    Ok(Permissions::of(&actions))
}

fn parse_channels(text: &str) -> Result<ChannelScope, Fatal> {
    if text == "all" {
        return Ok(ChannelScope::All);
    }
    let list = text
        .split(',')
        .map(|c| c.trim().parse::<u16>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Fatal(format!("--channels {text:?}: expected all or 1,2,...")))?;
    ChannelSet::from_channels(&list)
        .map(ChannelScope::Only)
        .ok_or_else(|| Fatal(format!("--channels {text:?}: channels are 1..=256")))
}

fn field_command(command: &str, parser: lexopt::Parser) -> Result<ExitCode, Fatal> {
    let a = parse_field(parser)?;
    let pki = a.pki.clone().unwrap_or_else(|| PathBuf::from("sim-pki"));
    let (host, port) = parse_broker(a.broker.as_deref().unwrap_or("127.0.0.1:8883"))?;
    match (&a.site, a.serials.is_empty()) {
        (Some(_), _) if command != "service" => {
            return Err(Fatal(format!("{command}: --site is for `service` only")))
        }
        (Some(_), false) => {
            return Err(Fatal(
                "service: give --serial S... or --site INSTALLER-ID, not both".into(),
            ))
        }
        (None, true) => return Err(Fatal(format!("{command}: --serial S is required"))),
        _ => {}
    }
    let target = Target::new(&pki, &host, port);
    let rt = runtime()?;
    rt.block_on(async {
        match command {
            "status" => {
                let cloud = target.connect().await?;
                let mut ok = true;
                for serial in &a.serials {
                    match field::status(&cloud, serial).await {
                        Ok(view) => {
                            // Like `systemctl status`: the text either way,
                            // success only for a device that is up.
                            ok &= view.is_healthy();
                            print!("{}", view.text());
                        }
                        Err(e) => {
                            ok = false;
                            println!("{serial}: {e}");
                        }
                    }
                }
                cloud.shutdown().await;
                Ok(exit(ok))
            }
            "service" => {
                let enabled = match a.positional.as_slice() {
                    [v] if v == "on" => true,
                    [v] if v == "off" => false,
                    _ => return Err(Fatal("service: say `on` or `off`".into())),
                };
                let cloud = target.connect().await?;
                if let Some(installer) = &a.site {
                    let ok = service_site(&cloud, installer, enabled).await;
                    cloud.shutdown().await;
                    return Ok(exit(ok));
                }
                let mut ok = true;
                for serial in &a.serials {
                    let result = field::service(&cloud, serial, enabled).await;
                    ok &= result.is_ok();
                    report(
                        serial,
                        &format!("cloud service {}", on_off(enabled)),
                        result,
                    );
                }
                cloud.shutdown().await;
                Ok(exit(ok))
            }
            "share" => {
                let serial = one_serial(command, &a)?;
                let to =
                    a.to.as_deref()
                        .ok_or_else(|| Fatal("share: --to ACCOUNT-ID is required".into()))?;
                let permissions =
                    parse_permissions(a.permissions.as_deref().unwrap_or("live-view"))?;
                let channels = parse_channels(a.channels.as_deref().unwrap_or("all"))?;
                let validity = a.hours.map(|h| {
                    let now = now_secs();
                    Validity {
                        not_before: now,
                        not_after: now + h * 3600,
                    }
                });
                let cloud = target.connect().await?;
                let region = match &a.region {
                    Some(r) => r.clone(),
                    None => field::learn(&cloud, &protocol::Serial::new(&serial)?)
                        .await
                        .map(|r| r.region.to_string())
                        .unwrap_or_else(|| "EU".into()),
                };
                let to = field::account_ref(to, &region)?;
                let result =
                    field::share(&cloud, &serial, &to, permissions, channels, validity).await;
                let ok = result.is_ok();
                report(&serial, "Shared", result);
                cloud.shutdown().await;
                Ok(exit(ok))
            }
            "unshare" => {
                let serial = one_serial(command, &a)?;
                if a.all != a.accounts.is_empty() {
                    return Err(Fatal(
                        "unshare: give --account ACCOUNT-ID (one or more) or --all".into(),
                    ));
                }
                let cloud = target.connect().await?;
                let result = field::unshare(&cloud, &serial, &a.accounts).await;
                let ok = result.is_ok();
                report(&serial, "deleted", result);
                cloud.shutdown().await;
                Ok(exit(ok))
            }
            "bind" => {
                let serial = one_serial(command, &a)?;
                let code = a
                    .code
                    .as_deref()
                    .ok_or_else(|| Fatal("bind: --code CODE is required".into()))?;
                let (id, bind_as) = match (&a.installer, &a.owner) {
                    (Some(i), None) => (i.clone(), BindAs::Installer),
                    (None, Some(o)) => (o.clone(), BindAs::Owner),
                    _ => {
                        return Err(Fatal(
                            "bind: give --installer ACCOUNT-ID or --owner ACCOUNT-ID".into(),
                        ))
                    }
                };
                let cloud = target.connect().await?;
                let region = match &a.region {
                    Some(r) => r.clone(),
                    None => field::learn(&cloud, &protocol::Serial::new(&serial)?)
                        .await
                        .map(|r| r.region.to_string())
                        .unwrap_or_else(|| "EU".into()),
                };
                let account = field::account_ref(&id, &region)?;
                let result = field::bind(&cloud, &serial, code, &account, bind_as).await;
                let ok = result.is_ok();
                report(&serial, "bound", result);
                cloud.shutdown().await;
                Ok(exit(ok))
            }
            _ => Err(Fatal(format!("unknown command {command:?}"))),
        }
    })
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// Switches a whole site, one line per device and a summary; true if
/// every device was switched.
async fn service_site(cloud: &sim_device::cloud::Cloud, installer: &str, enabled: bool) -> bool {
    match field::service_for_site(cloud, installer, enabled).await {
        Ok(switch) => {
            for (serial, result) in &switch.outcomes {
                println!("{}", switch.line(serial, result));
            }
            println!("{}", switch.summary());
            switch.all_switched()
        }
        Err(e) => {
            println!("site of installer {installer}: {e}");
            false
        }
    }
}

fn report(serial: &str, done: &str, result: Result<(), field::OperationError>) {
    match result {
        Ok(()) => println!("{serial}: {done}"),
        Err(e) => println!("{serial}: {e}"),
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
