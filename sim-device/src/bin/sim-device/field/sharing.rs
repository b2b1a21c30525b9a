//! The owner's and the receivers' commands: `account add`, `share`
//! (per-permission or `--domain-only`), `unshare`, `leave`, and the device
//! domain name (`domain set`, `domain resolve`).

use sim_device::cloud::field;
use sim_device::cloud::ShareTerms;

use super::{
    one_account, one_serial, parse_channels, parse_permissions, report, required, validity,
    FieldArgs, Link,
};
use crate::Fatal;

/// `account add USER-NAME [--id ID] [--email E] [--phone P] [--region R]`.
pub(super) async fn account(link: &Link, a: &FieldArgs) -> Result<bool, Fatal> {
    let user_name = match a.positional.as_slice() {
        [verb, name] if verb == "add" => name.clone(),
        _ => return Err(Fatal("account: say `account add USER-NAME`".into())),
    };
    let region = a.region.as_deref().unwrap_or("EU");
    let cloud = link.cloud().await?;
    let (id, email, phone) = (a.id.as_deref(), a.email.as_deref(), a.phone.as_deref());
    Ok(
        match field::add_account(cloud, &user_name, id, email, phone, region) {
            Ok(id) => {
                println!("account {user_name}: registered (id {id}, region {region})");
                true
            }
            Err(e) => {
                println!("account {user_name}: {e}");
                false
            }
        },
    )
}

/// `share --serial S --to WHO [--permissions ...] [--channels ...]
/// [--hours H]`, or `--domain-only`.
pub(super) async fn share(link: &Link, a: &FieldArgs) -> Result<bool, Fatal> {
    let serial = one_serial("share", a)?;
    let to = required(
        "share",
        &a.to,
        "--to ACCOUNT (email, phone, user name or id)",
    )?;
    if a.region.is_some() {
        return Err(Fatal(
            "share: the receiver's region is its account's (account add --region)".into(),
        ));
    }
    if a.domain_only {
        if a.permissions.is_some() || a.channels.is_some() || a.hours.is_some() {
            return Err(Fatal(
                "share: --domain-only shares the domain name alone, without --permissions, --channels or --hours".into(),
            ));
        }
        let cloud = link.cloud().await?;
        let result = field::share_domain(cloud, &serial, to).await;
        return Ok(report(&serial, "Shared (domain name only)", result));
    }
    let terms = ShareTerms {
        permissions: parse_permissions(a.permissions.as_deref().unwrap_or("live-view"))?,
        channels: parse_channels(a.channels.as_deref().unwrap_or("all"))?,
        validity: validity(a),
    };
    let cloud = link.cloud().await?;
    let result = field::share(cloud, &serial, to, terms).await;
    Ok(report(&serial, "Shared", result))
}

/// `unshare --serial S (--account WHO... | --all)`.
pub(super) async fn unshare(link: &Link, a: &FieldArgs) -> Result<bool, Fatal> {
    let serial = one_serial("unshare", a)?;
    if a.all != a.accounts.is_empty() {
        return Err(Fatal(
            "unshare: give --account ACCOUNT-ID (one or more) or --all".into(),
        ));
    }
    let cloud = link.cloud().await?;
    let result = field::unshare(cloud, &serial, &a.accounts).await;
    Ok(report(&serial, "deleted", result))
}

/// `leave --serial S --account WHO`: the receiver deletes the shared
/// device from its side.
pub(super) async fn leave(link: &Link, a: &FieldArgs) -> Result<bool, Fatal> {
    let serial = one_serial("leave", a)?;
    let account = one_account("leave", a)?;
    let cloud = link.cloud().await?;
    let result = field::leave(cloud, &serial, account).await;
    let done = format!("{account} left the share");
    Ok(report(&serial, &done, result))
}

/// `domain set --serial S --name NAME` (the owner), `domain resolve --name
/// NAME --account WHO`.
pub(super) async fn domain(link: &Link, a: &FieldArgs) -> Result<bool, Fatal> {
    let name = required("domain", &a.name, "--name NAME")?;
    match a.positional.as_slice() {
        [verb] if verb == "set" => {
            let serial = one_serial("domain set", a)?;
            let cloud = link.cloud().await?;
            let result = field::set_domain(cloud, &serial, name).await;
            let done = format!("domain name {name} registered");
            Ok(report(&serial, &done, result))
        }
        [verb] if verb == "resolve" => {
            let account = one_account("domain resolve", a)?;
            let cloud = link.cloud().await?;
            Ok(match field::resolve_domain(cloud, account, name) {
                Ok(resolution) => {
                    println!("{name}: {} ({})", resolution, resolution.serial);
                    true
                }
                Err(e) => {
                    println!("{name}: {e}");
                    false
                }
            })
        }
        _ => Err(Fatal("domain: say `domain set` or `domain resolve`".into())),
    }
}
