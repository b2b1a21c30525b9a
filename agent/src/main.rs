//! `hc-agent`: the daemon on the recorder. Reads the configuration, applies
//! flag overrides, sets up logging and runs the event loop on a
//! single-threaded runtime until SIGTERM or SIGINT (SIGHUP reloads).
//! `hc-agent ctl ...` asks a running agent instead (`shell::ctl`).

use std::path::PathBuf;
use std::process::ExitCode;

use hc_agent::shell::config::Config;
use hc_agent::shell::daemon::{self, StartError};
use hc_agent::shell::tls::{self, TlsFiles};
use hc_agent::shell::{ctl, ctl::USAGE as CTL_USAGE};
use rustls_pki_types::UnixTime;

const USAGE: &str = "\
usage: hc-agent [--config PATH] [options]

  --config PATH       configuration file (default /etc/hc-agent/agent.toml)
  --check-config      validate configuration, certificates, key permissions
                      and the state directory, then exit (does not connect)
  --log-level LEVEL   error, warn, info, debug or trace (overrides [log].level)
  --state-dir PATH    overrides state_dir
  --socket PATH       overrides [local_socket].path
  --host HOST         overrides [cloud].host
  --port PORT         overrides [cloud].port
  --version           print the version and exit
  --help              print this help and exit

Signals: SIGTERM/SIGINT stop the agent; SIGHUP reloads the configuration,
certificate and key (an invalid configuration is logged and ignored).
Exit status: 0 stopped by SIGTERM/SIGINT (or --version, --help, a passed
--check-config); 1 invalid configuration or cannot start; 2 bad command
line; 3 another hc-agent runs on the same state_dir.
";

#[derive(Clone)]
struct Flags {
    config: PathBuf,
    check_only: bool,
    log_level: Option<String>,
    state_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    host: Option<String>,
    port: Option<u16>,
}

enum Parsed {
    Run(Flags),
    Exit(ExitCode),
}

fn parse_flags() -> Result<Parsed, lexopt::Error> {
    use lexopt::prelude::*;
    let mut flags = Flags {
        config: PathBuf::from(hc_agent::shell::config::DEFAULT_PATH),
        check_only: false,
        log_level: None,
        state_dir: None,
        socket: None,
        host: None,
        port: None,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("config") => flags.config = parser.value()?.into(),
            Long("check-config") => flags.check_only = true,
            Long("log-level") => flags.log_level = Some(parser.value()?.string()?),
            Long("state-dir") => flags.state_dir = Some(parser.value()?.into()),
            Long("socket") => flags.socket = Some(parser.value()?.into()),
            Long("host") => flags.host = Some(parser.value()?.string()?),
            Long("port") => flags.port = Some(parser.value()?.parse()?),
            Long("version") => {
                println!("hc-agent {}", hc_agent::VERSION);
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            Long("help") | Short('h') => {
                println!("{USAGE}{CTL_USAGE}");
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Parsed::Run(flags))
}

fn load_config(flags: &Flags) -> Result<Config, String> {
    let mut config = Config::load(&flags.config).map_err(|e| e.to_string())?;
    if let Some(level) = &flags.log_level {
        config.log.level = level.clone();
    }
    if let Some(dir) = &flags.state_dir {
        config.state_dir = dir.clone();
    }
    if let Some(path) = &flags.socket {
        config.local_socket.path = path.clone();
    }
    if let Some(host) = &flags.host {
        config.cloud.host = host.clone();
    }
    if let Some(port) = flags.port {
        config.cloud.port = port;
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// A certificate that ends within this time is reported (still valid).
const CERT_WARNING: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Everything `--check-config` verifies, without connecting anywhere and
/// without leaving anything behind.
fn check_config(config: &Config) -> Result<(), String> {
    let claim = config
        .cloud
        .claim_cert
        .as_deref()
        .zip(config.cloud.claim_key.as_deref());
    if config.cloud.insecure_plaintext {
        println!("warning: cloud.insecure_plaintext is set: no TLS (tests only)");
    } else if let (Some((claim_cert, claim_key)), false) = (claim, config.cloud.cert.is_file()) {
        // No certificate of its own yet: the claim certificate must load
        // (SPEC §6.7); the device's own pair comes from the cloud.
        tls::client_config(&TlsFiles {
            ca: &config.cloud.ca,
            cert: claim_cert,
            key: claim_key,
            allow_tls12: config.cloud.allow_tls12,
        })
        .map_err(|e| e.to_string())?;
        println!(
            "ok: no device certificate at {} yet: the agent provisions itself with the claim certificate {} (key {}), unless it already did (state_dir/credentials)",
            config.cloud.cert.display(),
            claim_cert.display(),
            claim_key.display()
        );
    } else {
        let files = TlsFiles {
            ca: &config.cloud.ca,
            cert: &config.cloud.cert,
            key: &config.cloud.key,
            allow_tls12: config.cloud.allow_tls12,
        };
        tls::client_config(&files).map_err(|e| e.to_string())?;
        tls::check_subject(&config.cloud.cert, &config.serial).map_err(|e| e.to_string())?;
        let now = std::time::SystemTime::now();
        let issuer = config.cloud.device_ca.as_deref();
        let certificate =
            tls::ClientCertificateCheck::load(&files, issuer).map_err(|e| e.to_string())?;
        certificate
            .valid_at(UnixTime::since_unix_epoch(since_epoch(now)))
            .map_err(|e| e.to_string())?;
        println!(
            "ok: CA {}, client certificate {} (chains to the CA, valid now, for client authentication), key {} (mode 0600 or stricter)",
            config.cloud.ca.display(),
            config.cloud.cert.display(),
            config.cloud.key.display()
        );
        match issuer {
            Some(ca) => println!(
                "ok: the client certificate was checked against the device CA {}",
                ca.display()
            ),
            None => println!(
                "ok: the client certificate was checked against the cloud CA {} (no device_ca set)",
                config.cloud.ca.display()
            ),
        }
        if certificate
            .valid_at(UnixTime::since_unix_epoch(since_epoch(now + CERT_WARNING)))
            .is_err()
        {
            println!("warning: the client certificate is no longer valid in 30 days: renew it");
        }
    }
    check_writable_dir(&config.state_dir, "state_dir")?;
    if let Some(parent) = config.local_socket.path.parent() {
        check_writable_dir(parent, "local_socket.path's directory")?;
    }
    println!(
        "ok: {} command key(s) pinned",
        config.command_keys().map_err(|e| e.to_string())?.len()
    );
    println!(
        "ok: local socket {} for uids {:?}, platform switch for uids {:?}",
        config.local_socket.path.display(),
        config.local_socket.allowed_uids,
        config.local_socket.admin_uids
    );
    println!(
        "ok: configuration for serial {} in region {}",
        config.serial, config.region
    );
    Ok(())
}

fn since_epoch(at: std::time::SystemTime) -> std::time::Duration {
    at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

/// The agent can create files in `dir`, or create `dir` itself. Probed
/// with a file (or directory) that is removed at once.
fn check_writable_dir(dir: &std::path::Path, what: &str) -> Result<(), String> {
    let shown = dir.display();
    if dir.is_dir() {
        let probe = dir.join(".hc-agent-write-check");
        std::fs::write(&probe, b"").map_err(|e| format!("{what} {shown} is not writable: {e}"))?;
        let _ = std::fs::remove_file(&probe);
        println!("ok: {what} {shown} is writable");
        return Ok(());
    }
    // Missing: the agent creates it (and its missing parents) at start.
    let existing = dir
        .ancestors()
        .find(|a| a.exists())
        .filter(|a| a.is_dir())
        .ok_or_else(|| format!("{what} {shown} cannot be created: a parent is not a directory"))?;
    let probe = existing.join(".hc-agent-write-check");
    std::fs::create_dir(&probe).map_err(|e| {
        format!(
            "{what} {shown} does not exist and cannot be created under {}: {e}",
            existing.display()
        )
    })?;
    let _ = std::fs::remove_dir(&probe);
    println!("ok: {what} {shown} does not exist yet; the agent will create it");
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "ctl") {
        return ctl::run(args.skip(1));
    }
    let flags = match parse_flags() {
        Ok(Parsed::Run(flags)) => flags,
        Ok(Parsed::Exit(code)) => return code,
        Err(e) => {
            eprintln!("hc-agent: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match load_config(&flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("hc-agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    if flags.check_only {
        return match check_config(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hc-agent: {e}");
                ExitCode::FAILURE
            }
        };
    }
    hc_agent::shell::syslog::init_logging(&config.log);

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("hc-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    let reload: hc_agent::shell::reload::LoadConfig = Box::new(move || load_config(&flags));
    let result = local.block_on(
        &runtime,
        daemon::run(config, Some(reload), shutdown_signal()),
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ StartError::Locked(_)) => {
            tracing::error!(error = %e, "agent not started");
            eprintln!("hc-agent: {e}");
            ExitCode::from(3)
        }
        Err(e) => {
            tracing::error!(error = %e, "agent could not start");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("signal handlers could not be installed; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}
