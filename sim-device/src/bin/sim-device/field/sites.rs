//! The installer's and the owner's device commands: `bind`, `delete`,
//! `remove-from-owner`, the owner's `installer grant|revoke|show`, and the
//! handover: `invite`, `resend`, `invitations`, `accept`.

use hc_protocol::{Grant, InstallerGrants};
use sim_device::cloud::field::{self, BindAs};
use sim_device::cloud::{
    Cloud, Contact, DeviceGrant, DeviceSelection, InstallerPermissions, InvitationId,
};

use super::{one_account, one_serial, report, required, validity, FieldArgs, Link};
use crate::Fatal;

/// `bind --serial S --code CODE (--installer ID | --owner ID) [--region R]`.
pub(super) async fn bind(link: &Link, a: &FieldArgs) -> Result<bool, Fatal> {
    let serial = one_serial("bind", a)?;
    let code = required("bind", &a.code, "--code CODE")?;
    let (id, bind_as) = match (&a.installer, &a.owner) {
        (Some(i), None) => (i.clone(), BindAs::Installer),
        (None, Some(o)) => (o.clone(), BindAs::Owner),
        _ => {
            return Err(Fatal(
                "bind: give --installer ACCOUNT-ID or --owner ACCOUNT-ID".into(),
            ))
        }
    };
    let cloud = link.cloud().await?;
    let account = field::account_ref(&id, &region(cloud, a, &serial).await?)?;
    let result = field::bind(cloud, &serial, code, &account, bind_as).await;
    Ok(report(&serial, "bound", result))
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

/// `delete --serial S`: the owner deletes the device from his account;
/// `remove-from-owner --serial S`: the installer holding "may disable
/// cloud service" does. Either way it can be added again.
pub(super) async fn delete(link: &Link, a: &FieldArgs, by_installer: bool) -> Result<bool, Fatal> {
    let command = if by_installer {
        "remove-from-owner"
    } else {
        "delete"
    };
    let serial = one_serial(command, a)?;
    let cloud = link.cloud().await?;
    let (result, who) = if by_installer {
        (
            field::remove_from_owner(cloud, &serial).await,
            " by the installer",
        )
    } else {
        (field::delete_device(cloud, &serial).await, "")
    };
    let done = format!("deleted from the owner's account{who}; it can be added again");
    Ok(report(&serial, &done, result))
}

/// The installer rights `--permissions` names (`site-info`,
/// `configuration`, `live-view`, `playback`), each for `--hours` or
/// without limit, and `--may-disable`.
fn installer_grants(a: &FieldArgs) -> Result<InstallerGrants, Fatal> {
    let grant = Some(Grant {
        validity: validity(a),
    });
    let mut grants = InstallerGrants {
        may_disable_cloud: a.may_disable,
        ..InstallerGrants::default()
    };
    let names = a.permissions.as_deref().unwrap_or("");
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "site-info" => grants.site_info = grant,
            "configuration" => grants.configuration = grant,
            "live-view" => grants.live_view = grant,
            "playback" => grants.playback = grant,
            _ => {
                return Err(Fatal(format!(
                    "--permissions: unknown installer right {name:?} \
                     (site-info, configuration, live-view, playback)"
                )))
            }
        }
    }
    Ok(grants)
}

/// `installer grant --serial S --to WHO [--permissions ...] [--hours H]
/// [--may-disable]`, `installer revoke --serial S`, `installer show
/// --serial S`: the owner and the installer's rights on his device.
pub(super) async fn installer(link: &Link, a: &FieldArgs) -> Result<bool, Fatal> {
    let serial = one_serial("installer", a)?;
    match a.positional.as_slice() {
        [verb] if verb == "grant" => {
            let to = required("installer grant", &a.to, "--to INSTALLER")?;
            let grants = installer_grants(a)?;
            let cloud = link.cloud().await?;
            let result = field::grant_installer(cloud, &serial, to, grants).await;
            let done = format!("installer rights granted to {to}");
            Ok(report(&serial, &done, result))
        }
        [verb] if verb == "revoke" => {
            let cloud = link.cloud().await?;
            let result = field::revoke_installer(cloud, &serial).await;
            Ok(report(&serial, "installer rights revoked", result))
        }
        [verb] if verb == "show" => Ok(
            match field::installer_rights(link.cloud().await?, &serial).await {
                Ok(Some(rights)) => {
                    println!(
                        "{serial}: installer {} ({}): {}",
                        rights
                            .user_name
                            .as_deref()
                            .unwrap_or(rights.installer.id.as_str()),
                        rights.installer.region,
                        field::grants_text(&rights.grants)
                    );
                    true
                }
                Ok(None) => {
                    println!("{serial}: no installer");
                    true
                }
                Err(e) => {
                    println!("{serial}: {e}");
                    false
                }
            },
        ),
        _ => Err(Fatal(
            "installer: say `installer grant`, `installer revoke` or `installer show`".into(),
        )),
    }
}

/// The site permissions an invitation asks for: the rights of
/// `--permissions` on every device of the site.
fn site_permissions(a: &FieldArgs) -> Result<InstallerPermissions, Fatal> {
    let grants = installer_grants(a)?;
    let device_grant = |g: Option<Grant>| {
        g.map(|g| DeviceGrant {
            devices: DeviceSelection::All,
            validity: g.validity,
        })
    };
    Ok(InstallerPermissions {
        site_info: grants.site_info,
        configuration: device_grant(grants.configuration),
        live_view: device_grant(grants.live_view),
        playback: device_grant(grants.playback),
        allow_disable_cloud: grants.may_disable_cloud,
    })
}

/// `invite --installer WHO (--email E | --phone P) [--permissions ...]
/// [--hours H] [--may-disable] [--remarks TEXT]`.
pub(super) async fn invite(link: &Link, a: &FieldArgs) -> Result<bool, Fatal> {
    let installer = required("invite", &a.installer, "--installer INSTALLER")?;
    let contact = match (&a.email, &a.phone) {
        (Some(e), None) => Contact::email(e),
        (None, Some(p)) => Contact::phone(p),
        _ => return Err(Fatal("invite: give --email E or --phone P".into())),
    };
    let permissions = site_permissions(a)?;
    let cloud = link.cloud().await?;
    let result = contact.and_then(|contact| {
        let remarks = a.remarks.as_deref().unwrap_or("");
        field::invite(cloud, installer, contact.clone(), permissions, remarks)
            .map(|id| (id, contact))
    });
    Ok(invitation_line(
        installer,
        result.map(|(id, c)| format!("{id} sent to {c}")),
    ))
}

/// `resend --installer WHO`.
pub(super) async fn resend(link: &Link, a: &FieldArgs) -> Result<bool, Fatal> {
    let installer = required("resend", &a.installer, "--installer INSTALLER")?;
    let cloud = link.cloud().await?;
    let result = field::resend(cloud, installer).map(|id| format!("{id} sent again"));
    Ok(invitation_line(installer, result))
}

fn invitation_line(installer: &str, result: Result<String, impl std::fmt::Display>) -> bool {
    match result {
        Ok(text) => {
            println!("site of installer {installer}: {text}");
            true
        }
        Err(e) => {
            println!("site of installer {installer}: {e}");
            false
        }
    }
}

/// `invitations --account WHO`: what waits for the invitee, with the
/// installer's remarks.
pub(super) async fn invitations(link: &Link, a: &FieldArgs) -> Result<bool, Fatal> {
    let account = one_account("invitations", a)?;
    let cloud = link.cloud().await?;
    let list = match field::invitations(cloud, account) {
        Ok(list) => list,
        Err(e) => {
            println!("{account}: {e}");
            return Ok(false);
        }
    };
    if list.is_empty() {
        println!("{account}: no invitation");
    }
    for invitation in list {
        let remarks = match invitation.remarks.as_str() {
            "" => String::new(),
            text => format!("; remarks: {text}"),
        };
        println!(
            "{account}: {} for {}{remarks}",
            invitation.id, invitation.site
        );
    }
    Ok(true)
}

/// `accept --account WHO [--invitation N]`: one line per device of the
/// site; a device that did not acknowledge stays pending.
pub(super) async fn accept(link: &Link, a: &FieldArgs) -> Result<bool, Fatal> {
    let account = one_account("accept", a)?;
    let cloud = link.cloud().await?;
    let outcomes = match field::accept(cloud, account, a.invitation.map(InvitationId)).await {
        Ok(outcomes) => outcomes,
        Err(e) => {
            println!("{account}: {e}");
            return Ok(false);
        }
    };
    let mut ok = true;
    for (serial, result) in &outcomes {
        ok &= match result {
            Ok(()) => {
                println!("{serial}: handed over to {account}");
                true
            }
            Err(e) => {
                println!("{serial}: handover pending, sent again when the device answers: {e}");
                false
            }
        };
    }
    println!(
        "{account}: invitation accepted; {} of {} devices handed over",
        outcomes.iter().filter(|(_, r)| r.is_ok()).count(),
        outcomes.len()
    );
    Ok(ok)
}
