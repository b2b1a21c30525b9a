//! `hc-agent ctl`: the shell's way to ask the running agent, over its
//! local socket, in the same binary (flash is scarce). For health checks
//! (procd, inittab supervisors, watchdog scripts) and people:
//!
//! ```text
//! hc-agent ctl [--config PATH | --socket PATH] [--json] [--timeout SECS] COMMAND
//!   status                                 exit 0 online, 1 running but offline
//!   authorize (--cloud ID | --local LEVEL) ACTION [CHANNEL]
//!                                          exit 0 allowed, 1 denied
//!   access                                 the access list
//!   audit [MAX]                            the newest audit entries
//!   platform-access on|off                 as the device admin
//! ```
//!
//! Exit status 2 for a bad command line, 3 when no agent answers, 4 when
//! the agent refused the request (the reason is printed).

mod describe;
mod value;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use hc_protocol::access::{Action, LocalLevel, Principal};
use hc_protocol::local::LinkState;
use hc_protocol::AccountId;

use crate::client::{ClientError, LocalClient};
use crate::shell::config::Config;
use value::Value;

/// Success: online, allowed, done.
pub const EXIT_OK: u8 = 0;
/// `status`: the agent runs but is not connected; `authorize`: denied.
pub const EXIT_NO: u8 = 1;
/// A malformed command line.
pub const EXIT_USAGE: u8 = 2;
/// No agent answers on the socket.
pub const EXIT_NO_AGENT: u8 = 3;
/// The agent refused the request (or answered something unreadable).
pub const EXIT_REFUSED: u8 = 4;

/// `hc-agent ctl`'s part of `--help`.
pub const USAGE: &str = "\
       hc-agent ctl [--config PATH | --socket PATH] [--json] [--timeout SECS] COMMAND

  status                              exit 0 online, 1 running but offline
  authorize (--cloud ID | --local admin|operator|guest) ACTION [CHANNEL]
                                      exit 0 allowed, 1 denied (ACTION: live-view,
                                      playback, ptz, config-write, ...)
  access                              the access list
  audit [MAX]                         the newest audit entries (default 32)
  platform-access on|off              switch platform access as the device admin
  exit 2 bad command line, 3 no agent answers, 4 the agent refused";

enum Command {
    Status,
    Authorize {
        principal: Principal,
        action: Action,
        channel: Option<u16>,
    },
    Access,
    Audit(u16),
    PlatformAccess(bool),
}

struct Options {
    config: PathBuf,
    socket: Option<PathBuf>,
    json: bool,
    timeout: Duration,
    command: Command,
}

/// Runs `hc-agent ctl` with the arguments after `ctl`.
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let options = match parse(args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("hc-agent ctl: {e}\nusage: {}", USAGE.trim_start());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let (code, answer) = ask(&options);
    if options.json {
        println!("{}", answer.json());
    } else if code == EXIT_NO_AGENT || code == EXIT_REFUSED {
        eprint!("hc-agent ctl: {}", answer.human());
    } else {
        print!("{}", answer.human());
    }
    ExitCode::from(code)
}

fn ask(options: &Options) -> (u8, Value) {
    let socket = match &options.socket {
        Some(socket) => socket.clone(),
        None => match Config::load(&options.config) {
            Ok(config) => config.local_socket.path,
            Err(e) => return no_agent(format!("no socket path (give --socket): {e}")),
        },
    };
    let mut client = match LocalClient::connect(&socket, options.timeout) {
        Ok(client) => client,
        Err(e) => return no_agent(format!("no agent answers on {}: {e}", socket.display())),
    };
    match request(&mut client, &options.command) {
        Ok(answer) => answer,
        Err(ClientError::Refused(reason)) => (EXIT_REFUSED, describe::reason(reason)),
        Err(e @ ClientError::Io(_)) => no_agent(format!("no answer on {}: {e}", socket.display())),
        Err(e) => (EXIT_REFUSED, Value::Object(vec![("error", Value::text(e))])),
    }
}

fn no_agent(error: String) -> (u8, Value) {
    (
        EXIT_NO_AGENT,
        Value::Object(vec![
            ("running", Value::Bool(false)),
            ("error", Value::Text(error)),
        ]),
    )
}

fn request(client: &mut LocalClient, command: &Command) -> Result<(u8, Value), ClientError> {
    Ok(match command {
        Command::Status => {
            let status = client.status()?;
            let online = status.link == LinkState::Connected;
            let code = if online { EXIT_OK } else { EXIT_NO };
            (code, describe::status(&status))
        }
        Command::Authorize {
            principal,
            action,
            channel,
        } => {
            let decision = client.authorize(principal.clone(), *action, *channel)?;
            let code = if decision.is_allow() {
                EXIT_OK
            } else {
                EXIT_NO
            };
            (code, describe::decision(&decision))
        }
        Command::Access => (EXIT_OK, describe::access(&client.list_access()?)),
        Command::Audit(max) => (EXIT_OK, describe::audit(&client.recent_audit(*max)?)),
        Command::PlatformAccess(enabled) => {
            client.set_platform_access(LocalLevel::Admin, *enabled)?;
            let done = Value::Object(vec![("platform_access", Value::Bool(*enabled))]);
            (EXIT_OK, done)
        }
    })
}

fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Options, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut options = Options {
        config: PathBuf::from(crate::shell::config::DEFAULT_PATH),
        socket: None,
        json: false,
        timeout: Duration::from_secs(5),
        command: Command::Status,
    };
    let mut words: Vec<String> = Vec::new();
    let mut principal = None;
    let e = |e: lexopt::Error| e.to_string();
    while let Some(arg) = parser.next().map_err(e)? {
        match arg {
            Long("config") => options.config = parser.value().map_err(e)?.into(),
            Long("socket") => options.socket = Some(parser.value().map_err(e)?.into()),
            Long("json") => options.json = true,
            Long("timeout") => {
                let secs: u64 = parser.value().map_err(e)?.parse().map_err(e)?;
                options.timeout = Duration::from_secs(secs.max(1));
            }
            Long("cloud") => {
                let id = parser.value().map_err(e)?.string().map_err(e)?;
                let id = AccountId::new(&id).map_err(|err| format!("--cloud {id}: {err}"))?;
                principal = Some(Principal::Cloud(id));
            }
            Long("local") => {
                let level = parser.value().map_err(e)?.string().map_err(e)?;
                principal = Some(Principal::Local(local_level(&level)?));
            }
            Value(word) => words.push(word.string().map_err(e)?),
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    options.command = command(&words, principal)?;
    Ok(options)
}

fn command(words: &[String], principal: Option<Principal>) -> Result<Command, String> {
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    Ok(match words.as_slice() {
        ["status"] => Command::Status,
        ["access"] => Command::Access,
        ["audit"] => Command::Audit(hc_protocol::limits::MAX_AUDIT_REPLY as u16),
        ["audit", max] => Command::Audit(
            max.parse()
                .map_err(|_| format!("audit: {max} is not a count"))?,
        ),
        ["platform-access", "on"] => Command::PlatformAccess(true),
        ["platform-access", "off"] => Command::PlatformAccess(false),
        ["authorize", action, rest @ ..] if rest.len() <= 1 => Command::Authorize {
            principal: principal.ok_or("authorize needs --cloud ID or --local LEVEL")?,
            action: action_named(action)?,
            channel: match rest.first() {
                Some(c) => Some(
                    c.parse()
                        .map_err(|_| format!("{c} is not a channel number"))?,
                ),
                None => None,
            },
        },
        [] => return Err("no command".into()),
        other => return Err(format!("unknown command: {}", other.join(" "))),
    })
}

/// `live-view`, `LiveView` and `live_view` all name `Action::LiveView`.
fn action_named(name: &str) -> Result<Action, String> {
    let plain = |s: &str| s.replace(['-', '_'], "").to_ascii_lowercase();
    Action::ALL
        .iter()
        .copied()
        .find(|a| plain(a.name()) == plain(name))
        .ok_or_else(|| format!("unknown action {name}"))
}

fn local_level(name: &str) -> Result<LocalLevel, String> {
    match name {
        "admin" => Ok(LocalLevel::Admin),
        "operator" => Ok(LocalLevel::Operator),
        "guest" => Ok(LocalLevel::Guest),
        _ => Err(format!("--local {name}: admin, operator or guest")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<Options, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn command_lines() {
        let o = parsed(&[
            "--json",
            "--socket",
            "/s",
            "authorize",
            "--cloud",
            "bob",
            "live-view",
            "2",
        ])
        .unwrap();
        assert!(o.json);
        assert!(matches!(
            o.command,
            Command::Authorize {
                action: Action::LiveView,
                channel: Some(2),
                ..
            }
        ));
        assert!(matches!(
            parsed(&["audit", "5"]).unwrap().command,
            Command::Audit(5)
        ));
        assert!(matches!(
            parsed(&["platform-access", "off"]).unwrap().command,
            Command::PlatformAccess(false)
        ));
        assert!(parsed(&["authorize", "LiveView"]).is_err(), "no principal");
        assert!(parsed(&["authorize", "--local", "root", "ptz"]).is_err());
        assert!(parsed(&["authorize", "--cloud", "bob", "fly"]).is_err());
        assert!(parsed(&["reboot"]).is_err());
        assert!(parsed(&[]).is_err());
    }
}
