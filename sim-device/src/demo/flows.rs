//! The flows the story told last (issue 17): the documents' own share with
//! device-account access by domain name, "Delete All", "Network busy" while
//! the device admin has platform access off, the installer deleting the
//! device from the owner's account and adding it again, the owner granting
//! the installer rights on a device outside any site, and local recovery.

use std::time::Duration;

use hc_protocol::access::{LocalLevel, Principal};
use hc_protocol::messages::Binding;
use hc_protocol::{AccountId, Action, Grant, InstallerGrants, Permissions, Reason};

use super::sections::{Scene, DOMAIN, ONLINE_WAIT};
use super::story::{decision_text, denied, list_text, result_text, Story, ADDRESS};
use super::{DemoError, CODE, SERIAL};
use crate::cloud::model::{CloudError, ShareKind, ShareTerms};

/// How long the cloud waits for the state report after a local change.
const REPORT_WAIT: Duration = Duration::from_secs(5);

pub(super) async fn tell(
    story: &mut Story<'_>,
    scene: &Scene<'_>,
    olivia: &AccountId,
) -> Result<(), DemoError> {
    documents_share(story, scene, olivia).await;
    delete_all(story, scene, olivia).await;
    network_busy(story, scene, olivia).await?;
    installer_deletes_and_adds_again(story, scene, olivia).await;
    installer_rights_outside_the_site(story, scene, olivia).await;
    local_recovery(story, scene, olivia).await;
    Ok(())
}

fn local(level: LocalLevel) -> Principal {
    Principal::Local(level)
}

/// "Currently only device domain name could be shared": steve gets the
/// name and who shared it; the device's own accounts decide the rest.
async fn documents_share(story: &mut Story<'_>, scene: &Scene<'_>, olivia: &AccountId) {
    let (cloud, recorder, steve) = (scene.cloud, scene.recorder, &scene.people.steve);
    story.section("The documents' own share: the domain name, then the device's accounts");
    let shared = cloud
        .share_domain(olivia, SERIAL, "steve@example.com")
        .await;
    story.done(
        "olivia shares the domain name only with steve@example.com",
        &shared,
        "Shared",
    );
    let seen = cloud.with_model(|m| {
        m.shared_with(steve)
            .iter()
            .map(|r| {
                let by = m.account(&r.owner.id).map(|a| a.user_name.clone());
                let kind = match r.kind {
                    ShareKind::DomainOnly => "domain only",
                    ShareKind::Permissions => "permissions",
                };
                format!(
                    "{} ({kind}), shared by {}",
                    r.domain,
                    by.unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    });
    story.step(
        "steve's Device Domain list",
        format!("{DOMAIN} (domain only), shared by olivia"),
        seen,
    );
    story.step(
        "steve resolves bakery-main-st",
        ADDRESS,
        scene.resolve(steve),
    );
    story.step(
        "steve's live view through the cloud (not shared that way)",
        denied(Reason::ActionNotGranted),
        scene.live_view(steve, 1),
    );
    let levels = [
        (
            "operator",
            LocalLevel::Operator,
            Action::LiveView,
            "allowed".to_owned(),
        ),
        (
            "operator",
            LocalLevel::Operator,
            Action::ConfigWrite,
            denied(Reason::ActionNotGranted),
        ),
        (
            "guest",
            LocalLevel::Guest,
            Action::Ptz,
            denied(Reason::ActionNotGranted),
        ),
        (
            "admin",
            LocalLevel::Admin,
            Action::ConfigWrite,
            "allowed".to_owned(),
        ),
    ];
    for (name, level, action, promised) in levels {
        let channel = action.is_channel_scoped().then_some(1);
        story.step(
            format!("steve by domain name with the device's {name} account: {action:?}"),
            promised,
            decision_text(&recorder.authorize(&local(level), action, channel)),
        );
    }
}

/// "You can also disable all the sharing."
async fn delete_all(story: &mut Story<'_>, scene: &Scene<'_>, olivia: &AccountId) {
    let cloud = scene.cloud;
    story.section("Delete All");
    let live_view = ShareTerms::always(Permissions::of(&[Action::LiveView]));
    let shared = scene
        .olivia_shares(olivia, "frank@example.com", live_view)
        .await;
    story.step(
        "olivia shares with frank@example.com again",
        "Shared",
        shared,
    );
    story.step(
        format!("olivia views the accounts {SERIAL} is shared to"),
        "frank@example.com, steve@example.com",
        list_text(cloud, olivia),
    );
    let all = cloud
        .execute_plan(|m| m.plan_unshare_all(olivia, SERIAL))
        .await;
    story.done("olivia taps Delete All", &all, "deleted");
    story.step(
        format!("olivia views the accounts {SERIAL} is shared to"),
        "none",
        list_text(cloud, olivia),
    );
    story.step(
        "steve resolves bakery-main-st",
        CloudError::DomainNotShared.to_string(),
        scene.resolve(&scene.people.steve),
    );
}

/// The device admin switches platform access off: the recorder does not
/// answer, and a share gives "Network busy"; on again, it is back.
async fn network_busy(
    story: &mut Story<'_>,
    scene: &Scene<'_>,
    olivia: &AccountId,
) -> Result<(), DemoError> {
    let cloud = scene.cloud;
    story.section("Platform access and \"Network busy\"");
    platform_access(story, scene, false).await?;
    let live_view = ShareTerms::always(Permissions::of(&[Action::LiveView]));
    let busy = cloud
        .share(olivia, SERIAL, "frank@example.com", live_view)
        .await;
    let text = result_text(&busy, "Shared");
    let (first, detail) = text.split_once('\n').unwrap_or((&text, ""));
    story.step(
        "olivia shares with frank@example.com",
        "Network busy",
        first,
    );
    story.note(detail);
    story.step(
        "olivia's live view of channel 1 (the admin cut the cloud off)",
        denied(Reason::PlatformAccessOff),
        scene.live_view(olivia, 1),
    );
    platform_access(story, scene, true).await
}

/// The device admin switches platform access on its local menu; the step
/// holds once the cloud sees the recorder go online or offline with it.
async fn platform_access(
    story: &mut Story<'_>,
    scene: &Scene<'_>,
    on: bool,
) -> Result<(), DemoError> {
    let switched = scene
        .recorder
        .client()?
        .set_platform_access(LocalLevel::Admin, on);
    let seen = switched.is_ok()
        && scene
            .cloud
            .wait_online(&scene.serial, on, ONLINE_WAIT)
            .await;
    let expected = if on {
        "on; the recorder is online"
    } else {
        "off; the recorder is offline"
    };
    let outcome = if seen {
        expected.to_owned()
    } else {
        format!("{switched:?}")
    };
    let what = if on {
        "the device admin switches platform access on"
    } else {
        "the device admin switches platform access off (local menu)"
    };
    story.step(what, expected, outcome);
    Ok(())
}

/// The installer holding "Allow me to disable" deletes the recorder from
/// olivia's account, adds it to a new site and removes it again; olivia
/// adds it back herself.
async fn installer_deletes_and_adds_again(
    story: &mut Story<'_>,
    scene: &Scene<'_>,
    olivia: &AccountId,
) {
    let (cloud, installer) = (scene.cloud, scene.installer());
    story.section("The installer deletes the device from the owner's account");
    let removed = cloud
        .execute_plan(|m| m.plan_remove_from_owner(installer, SERIAL))
        .await;
    story.done(
        "installer deletes the recorder from olivia's account",
        &removed,
        "deleted",
    );
    story.step(
        "olivia's live view of channel 1",
        denied(Reason::NotBound),
        scene.live_view(olivia, 1),
    );
    let readded = match cloud.with_model(|m| m.create_site(installer, "Bakery, new site")) {
        Ok(site) => {
            let added = cloud
                .execute_plan(|m| m.plan_add_to_site(installer, site, SERIAL, CODE))
                .await;
            let text = result_text(&added, "added");
            let removed = cloud
                .execute_plan(|m| m.plan_remove_from_site(installer, site, SERIAL))
                .await;
            format!("{text}; {}", result_text(&removed, "removed from the site"))
        }
        Err(e) => e.to_string(),
    };
    story.step(
        "installer adds it to a new site again, then removes it from the site",
        "added; removed from the site",
        readded,
    );
    let mine = cloud
        .execute_plan(|m| m.plan_bind_owner(olivia, SERIAL, CODE))
        .await;
    story.done(
        "olivia adds the recorder to her account with its verification code",
        &mine,
        "added",
    );
}

/// The recorder is olivia's own now, in no site: she authorizes the
/// installer's maintenance, sees it and revokes it.
async fn installer_rights_outside_the_site(
    story: &mut Story<'_>,
    scene: &Scene<'_>,
    olivia: &AccountId,
) {
    let (cloud, installer) = (scene.cloud, scene.installer());
    story.section("The owner grants the installer rights on a device outside the site");
    let now = cloud.now();
    let one_day = Some(Grant {
        validity: Some(hc_protocol::Validity {
            not_before: now - 60,
            not_after: now + 86_400,
        }),
    });
    let grants = InstallerGrants {
        live_view: one_day,
        configuration: one_day,
        ..InstallerGrants::default()
    };
    let granted = cloud
        .execute_plan(|m| {
            m.plan_authorize_installer(olivia, SERIAL, "ops@acme-security.example", grants)
        })
        .await;
    story.done(
        "olivia authorizes acme-security: live view and configuration for 24 h",
        &granted,
        "granted",
    );
    let rights = cloud.with_model(|m| m.installer_rights(olivia, SERIAL));
    let rights = match rights {
        Ok(Some(r)) => format!(
            "{}: live view {}, configuration {}, playback {}",
            r.user_name.unwrap_or_default(),
            yes(r.grants.live_view),
            yes(r.grants.configuration),
            yes(r.grants.playback)
        ),
        Ok(None) => "none".into(),
        Err(e) => e.to_string(),
    };
    story.step(
        "olivia views the installer's rights",
        "acme-security: live view yes, configuration yes, playback no",
        rights,
    );
    story.step(
        "installer's live view of channel 1",
        "allowed",
        scene.live_view(installer, 1),
    );
    let name = cloud
        .state(&scene.serial)
        .map(|r| r.domain.to_string())
        .unwrap_or_default();
    story.step(
        format!("installer resolves {name} for maintenance"),
        ADDRESS,
        scene.resolve_name(installer, &name),
    );
    let revoked = cloud
        .execute_plan(|m| m.plan_revoke_installer(olivia, SERIAL))
        .await;
    story.done("olivia revokes the installer's rights", &revoked, "revoked");
    story.step(
        "installer's live view of channel 1, right after",
        denied(Reason::NotAPrincipal),
        scene.live_view(installer, 1),
    );
}

fn yes(grant: Option<Grant>) -> &'static str {
    if grant.is_some() {
        "yes"
    } else {
        "no"
    }
}

/// The owner is gone: the device admin unbinds the recorder on its local
/// menu, the cloud learns it, and the recorder can be added again.
async fn local_recovery(story: &mut Story<'_>, scene: &Scene<'_>, olivia: &AccountId) {
    let (cloud, recorder) = (scene.cloud, scene.recorder);
    story.section("Local recovery");
    let guest = recorder.client().map(|mut c| c.unbind(LocalLevel::Guest));
    story.step(
        "a guest asks the local menu to unbind",
        "refused",
        match guest {
            Ok(Err(_)) => "refused".to_owned(),
            other => format!("{other:?}"),
        },
    );
    let unbound = recorder.client().map(|mut c| c.unbind(LocalLevel::Admin));
    let seen = match unbound {
        Ok(Ok(())) => match cloud
            .wait_state(
                &scene.serial,
                |r| r.binding == Binding::Unbound,
                REPORT_WAIT,
            )
            .await
        {
            Some(_) => "unbound; the cloud sees it unbound".to_owned(),
            None => "unbound, but the cloud did not hear of it".to_owned(),
        },
        other => format!("{other:?}"),
    };
    story.step(
        "the device admin unbinds the recorder from the cloud (local menu)",
        "unbound; the cloud sees it unbound",
        seen,
    );
    story.step(
        "olivia's live view of channel 1",
        denied(Reason::NotBound),
        scene.live_view(olivia, 1),
    );
    let frank = cloud
        .execute_plan(|m| m.plan_bind_owner(&scene.people.frank, SERIAL, CODE))
        .await;
    story.done("frank adds the recorder to his account", &frank, "added");
}
