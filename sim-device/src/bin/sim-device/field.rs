//! The field-engineer commands (`status`, `service`, `share`, `unshare`,
//! `bind`): their arguments, and each run as the PKI's `cloud` client
//! against a running broker, one line per device.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use hc_protocol::access::Action;
use hc_protocol::{ChannelScope, ChannelSet, Permissions, Validity};
use lexopt::prelude::*;
use sim_device::cloud::driver::now_secs;
use sim_device::cloud::field::{self, BindAs, Target};
use sim_device::cloud::{Cloud, ShareTerms};

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

pub fn command(command: &str, parser: lexopt::Parser) -> Result<ExitCode, Fatal> {
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
    let ok = runtime()?.block_on(async {
        match command {
            "status" => status(&target, &a).await,
            "service" => service(&target, &a).await,
            "share" => share(&target, &a).await,
            "unshare" => unshare(&target, &a).await,
            "bind" => bind(&target, &a).await,
            _ => Err(Fatal(format!("unknown command {command:?}"))),
        }
    })?;
    Ok(exit(ok))
}

/// `status`: like `systemctl status`, the text either way, success only
/// for devices that are up.
async fn status(target: &Target, a: &FieldArgs) -> Result<bool, Fatal> {
    let cloud = target.connect().await?;
    let mut ok = true;
    for serial in &a.serials {
        match field::status(&cloud, serial).await {
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
    cloud.shutdown().await;
    Ok(ok)
}

async fn service(target: &Target, a: &FieldArgs) -> Result<bool, Fatal> {
    let enabled = match a.positional.as_slice() {
        [v] if v == "on" => true,
        [v] if v == "off" => false,
        _ => return Err(Fatal("service: say `on` or `off`".into())),
    };
    let cloud = target.connect().await?;
    let ok = match &a.site {
        Some(installer) => service_site(&cloud, installer, enabled).await,
        None => {
            let mut ok = true;
            for serial in &a.serials {
                let result = field::service(&cloud, serial, enabled).await;
                ok &= report(
                    serial,
                    &format!("cloud service {}", on_off(enabled)),
                    result,
                );
            }
            ok
        }
    };
    cloud.shutdown().await;
    Ok(ok)
}

async fn share(target: &Target, a: &FieldArgs) -> Result<bool, Fatal> {
    let serial = one_serial("share", a)?;
    let to =
        a.to.as_deref()
            .ok_or_else(|| Fatal("share: --to ACCOUNT-ID is required".into()))?;
    let permissions = parse_permissions(a.permissions.as_deref().unwrap_or("live-view"))?;
    let channels = parse_channels(a.channels.as_deref().unwrap_or("all"))?;
    let validity = a.hours.map(|h| {
        let now = now_secs();
        Validity {
            not_before: now,
            not_after: now + h * 3600,
        }
    });
    let cloud = target.connect().await?;
    let to = field::account_ref(to, &region(&cloud, a, &serial).await?)?;
    let terms = ShareTerms {
        permissions,
        channels,
        validity,
    };
    let result = field::share(&cloud, &serial, &to, terms).await;
    let ok = report(&serial, "Shared", result);
    cloud.shutdown().await;
    Ok(ok)
}

async fn unshare(target: &Target, a: &FieldArgs) -> Result<bool, Fatal> {
    let serial = one_serial("unshare", a)?;
    if a.all != a.accounts.is_empty() {
        return Err(Fatal(
            "unshare: give --account ACCOUNT-ID (one or more) or --all".into(),
        ));
    }
    let cloud = target.connect().await?;
    let result = field::unshare(&cloud, &serial, &a.accounts).await;
    let ok = report(&serial, "deleted", result);
    cloud.shutdown().await;
    Ok(ok)
}

async fn bind(target: &Target, a: &FieldArgs) -> Result<bool, Fatal> {
    let serial = one_serial("bind", a)?;
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
    let account = field::account_ref(&id, &region(&cloud, a, &serial).await?)?;
    let result = field::bind(&cloud, &serial, code, &account, bind_as).await;
    let ok = report(&serial, "bound", result);
    cloud.shutdown().await;
    Ok(ok)
}

/// The account's region: `--region`, else the device's (from its state
/// report), else EU.
async fn region(cloud: &Cloud, a: &FieldArgs, serial: &str) -> Result<String, Fatal> {
    Ok(match &a.region {
        Some(r) => r.clone(),
        None => field::learn(cloud, &hc_protocol::Serial::new(serial)?)
            .await
            .map(|r| r.region.to_string())
            .unwrap_or_else(|| "EU".into()),
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
fn report(serial: &str, done: &str, result: Result<(), field::OperationError>) -> bool {
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
