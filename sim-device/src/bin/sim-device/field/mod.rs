//! The field-engineer commands: their arguments, and each run as the PKI's
//! `cloud` client against a running broker with the cloud's records of
//! earlier runs, one line per device. `sharing` and `sites` hold the
//! commands of the owner's and the installer's flows.

mod sharing;
mod sites;

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;

use hc_protocol::access::Action;
use hc_protocol::{ChannelScope, ChannelSet, Permissions, Validity};
use lexopt::prelude::*;
use sim_device::cloud::driver::now_secs;
use sim_device::cloud::field::{self, Session, Target};
use sim_device::cloud::Cloud;
use tokio::sync::OnceCell;

use crate::{exit, parse_broker, runtime, Fatal};

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
    id: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    name: Option<String>,
    remarks: Option<String>,
    invitation: Option<u64>,
    may_disable: bool,
    domain_only: bool,
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
            Long("id") => a.id = Some(string(parser.value()?)?),
            Long("email") => a.email = Some(string(parser.value()?)?),
            Long("phone") => a.phone = Some(string(parser.value()?)?),
            Long("name") => a.name = Some(string(parser.value()?)?),
            Long("remarks") => a.remarks = Some(string(parser.value()?)?),
            Long("invitation") => a.invitation = Some(parser.value()?.parse()?),
            Long("may-disable") => a.may_disable = true,
            Long("domain-only") => a.domain_only = true,
            Value(v) => a.positional.push(string(v)?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok(a)
}

/// The one `--account WHO` the command acts as.
fn one_account<'a>(command: &str, a: &'a FieldArgs) -> Result<&'a str, Fatal> {
    match a.accounts.as_slice() {
        [one] => Ok(one),
        _ => Err(Fatal(format!(
            "{command}: exactly one --account WHO is required"
        ))),
    }
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

/// One command's run: its outcome (every device done), or a usage error.
type Run<'a> = Pin<Box<dyn Future<Output = Result<bool, Fatal>> + 'a>>;
type Handler = for<'a> fn(&'a Link, &'a FieldArgs) -> Run<'a>;

/// The commands this module runs, by name.
const HANDLERS: &[(&str, Handler)] = &[
    ("status", |l, a| Box::pin(status(l, a))),
    ("service", |l, a| Box::pin(service(l, a))),
    ("share", |l, a| Box::pin(sharing::share(l, a))),
    ("unshare", |l, a| Box::pin(sharing::unshare(l, a))),
    ("leave", |l, a| Box::pin(sharing::leave(l, a))),
    ("account", |l, a| Box::pin(sharing::account(l, a))),
    ("domain", |l, a| Box::pin(sharing::domain(l, a))),
    ("bind", |l, a| Box::pin(sites::bind(l, a))),
    ("delete", |l, a| Box::pin(sites::delete(l, a, false))),
    ("remove-from-owner", |l, a| {
        Box::pin(sites::delete(l, a, true))
    }),
    ("installer", |l, a| Box::pin(sites::installer(l, a))),
    ("invite", |l, a| Box::pin(sites::invite(l, a))),
    ("resend", |l, a| Box::pin(sites::resend(l, a))),
    ("invitations", |l, a| Box::pin(sites::invitations(l, a))),
    ("accept", |l, a| Box::pin(sites::accept(l, a))),
];

/// Whether `command` is one of the field-engineer commands.
pub fn is_command(command: &str) -> bool {
    HANDLERS.iter().any(|(name, _)| *name == command)
}

pub fn command(command: &str, parser: lexopt::Parser) -> Result<ExitCode, Fatal> {
    let a = parse_field(parser)?;
    let pki = a.pki.clone().unwrap_or_else(|| PathBuf::from("sim-pki"));
    let (host, port) = parse_broker(a.broker.as_deref().unwrap_or("127.0.0.1:8883"))?;
    if a.site.is_some() && command != "service" {
        return Err(Fatal(format!("{command}: --site is for `service` only")));
    }
    let target = Target::new(&pki, &host, port);
    let ok = runtime()?.block_on(async {
        let link = Link {
            target,
            session: OnceCell::new(),
        };
        let ok = match HANDLERS.iter().find(|(name, _)| *name == command) {
            Some((_, handler)) => handler(&link, &a).await,
            None => Err(Fatal(format!("unknown command {command:?}"))),
        };
        // Saved whatever the outcome: a refusal may still have taught the
        // records something (a state report, a registration).
        if let Some(session) = link.session.into_inner() {
            session.close().await?;
        }
        ok
    })?;
    Ok(exit(ok))
}

/// The connection of one run, opened once the arguments were checked (a
/// usage error needs no broker).
struct Link {
    target: Target,
    session: OnceCell<Session>,
}

impl Link {
    async fn cloud(&self) -> Result<&Cloud, Fatal> {
        let session = self
            .session
            .get_or_try_init(|| self.target.connect())
            .await?;
        Ok(&session.cloud)
    }
}

/// One or more `--serial`, for `status` and `service`.
fn serials(command: &str, a: &FieldArgs) -> Result<(), Fatal> {
    match (&a.site, a.serials.is_empty()) {
        (Some(_), false) => Err(Fatal(
            "service: give --serial S... or --site INSTALLER-ID, not both".into(),
        )),
        (None, true) => Err(Fatal(format!("{command}: --serial S is required"))),
        _ => Ok(()),
    }
}

fn required<'a>(command: &str, value: &'a Option<String>, what: &str) -> Result<&'a str, Fatal> {
    value
        .as_deref()
        .ok_or_else(|| Fatal(format!("{command}: {what} is required")))
}

/// `--hours H` from now, if given.
fn validity(a: &FieldArgs) -> Option<Validity> {
    a.hours.map(|h| {
        let now = now_secs();
        Validity {
            not_before: now,
            not_after: now + h * 3600,
        }
    })
}

/// `status`: like `systemctl status`, the text either way, success only
/// for devices that are up.
async fn status(link: &Link, a: &FieldArgs) -> Result<bool, Fatal> {
    serials("status", a)?;
    let cloud = link.cloud().await?;
    let mut ok = true;
    for serial in &a.serials {
        match field::status(cloud, serial).await {
            Ok(view) => {
                ok &= view.is_healthy();
                print!("{}", view.text());
            }
            Err(e) => {
                ok = false;
                println!("{serial}: {e}");
            }
        }
    }
    Ok(ok)
}

async fn service(link: &Link, a: &FieldArgs) -> Result<bool, Fatal> {
    serials("service", a)?;
    let enabled = match a.positional.as_slice() {
        [v] if v == "on" => true,
        [v] if v == "off" => false,
        _ => return Err(Fatal("service: say `on` or `off`".into())),
    };
    let cloud = link.cloud().await?;
    let ok = match &a.site {
        Some(installer) => service_site(cloud, installer, enabled).await,
        None => {
            let mut ok = true;
            for serial in &a.serials {
                let result = field::service(cloud, serial, enabled).await;
                ok &= report(
                    serial,
                    &format!("cloud service {}", on_off(enabled)),
                    result,
                );
            }
            ok
        }
    };
    Ok(ok)
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
async fn service_site(cloud: &Cloud, installer: &str, enabled: bool) -> bool {
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

/// Prints the device's line; true if the operation was done.
fn report<E: std::fmt::Display>(serial: &str, done: &str, result: Result<(), E>) -> bool {
    match result {
        Ok(()) => {
            println!("{serial}: {done}");
            true
        }
        Err(e) => {
            println!("{serial}: {e}");
            false
        }
    }
}
