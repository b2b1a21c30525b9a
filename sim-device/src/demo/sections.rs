//! The story, one function per section: the installer sets up the site,
//! invites the owner and hands the site over, the owner shares, the
//! installer's grants are checked, the cloud service is switched, the
//! domain name is set and resolved, and shares are deleted.

use std::time::Duration;

use hc_protocol::access::{Action, Principal};
use hc_protocol::{
    AccountId, ChannelScope, ChannelSet, Grant, Permissions, Reason, Serial, Validity,
};

use super::story::{
    decision_text, denied, err_text, list_text, per_device_text, result_text, Story, ADDRESS,
};
use super::{DemoError, People, CLOCK_BEHIND_SECS, CODE, SERIAL};
use crate::cloud::model::{
    CloudError, Contact, DeviceGrant, DeviceSelection, InstallerPermissions, InvitationId,
    ShareTerms, SiteId, SiteStatus,
};
use crate::cloud::Cloud;
use crate::recorder::Recorder;

/// How long the demo waits for the recorder to come online.
pub(super) const ONLINE_WAIT: Duration = Duration::from_secs(10);
/// How long the demo waits for a domain registration.
const REGISTRATION_WAIT: Duration = Duration::from_secs(8);
/// How long the demo waits for the agent to cut a watched stream.
const NOTICE_WAIT: Duration = Duration::from_secs(5);
/// The streaming server's id for frank's live view.
const FRANKS_STREAM: u32 = 1;

/// What every section of the story works with.
pub(super) struct Scene<'a> {
    pub(super) cloud: &'a Cloud,
    pub(super) recorder: &'a Recorder,
    pub(super) people: &'a People,
    pub(super) serial: Serial,
}

impl Scene<'_> {
    pub(super) fn installer(&self) -> &AccountId {
        &self.people.installer
    }

    /// The streaming server's answer to `id`'s live view of `channel`.
    pub(super) fn live_view(&self, id: &AccountId, channel: u16) -> String {
        decision_text(&self.recorder.live_view(&cloud_user(id), channel))
    }

    /// `id` resolves the demo's device domain name.
    pub(super) fn resolve(&self, id: &AccountId) -> String {
        self.resolve_name(id, DOMAIN)
    }

    /// `id` resolves the device domain `name`.
    pub(super) fn resolve_name(&self, id: &AccountId, name: &str) -> String {
        match self.cloud.resolve_domain(id, name) {
            Ok(r) => format!("{r}"),
            Err(e) => e.to_string(),
        }
    }

    /// Olivia shares the recorder with the account named `with`.
    pub(super) async fn olivia_shares(
        &self,
        olivia: &AccountId,
        with: &str,
        terms: ShareTerms,
    ) -> String {
        let shared = self.cloud.share(olivia, SERIAL, with, terms).await;
        result_text(&shared, "Shared")
    }
}

fn cloud_user(id: &AccountId) -> Principal {
    Principal::Cloud(id.clone())
}

/// The device domain name olivia gives the recorder.
pub(super) const DOMAIN: &str = "bakery-main-st";

pub(super) async fn tell(
    story: &mut Story<'_>,
    cloud: &Cloud,
    recorder: &Recorder,
    people: &People,
) -> Result<(), DemoError> {
    let serial = Serial::new(SERIAL).map_err(|e| CloudError::invalid("serial", e))?;
    let scene = Scene {
        cloud,
        recorder,
        people,
        serial,
    };
    let site = set_up_site(story, &scene).await?;
    let (first, olivia) = invite_owner(story, &scene, site)?;
    hand_over(story, &scene, site, first, &olivia).await?;
    share(story, &scene, &olivia).await;
    installer_after_handover(story, &scene);
    cloud_service_switch(story, &scene, site, &olivia).await;
    domain_name(story, &scene, &olivia).await;
    delete_shares(story, &scene, &olivia).await;
    super::flows::tell(story, &scene, &olivia).await
}

/// The recorder comes online; the installer creates the site and adds the
/// recorder with its verification code.
async fn set_up_site(story: &mut Story<'_>, scene: &Scene<'_>) -> Result<SiteId, DemoError> {
    let (cloud, installer) = (scene.cloud, scene.installer());
    story.section("The installer sets up the site");
    let online = cloud.wait_online(&scene.serial, true, ONLINE_WAIT).await;
    story.step(
        format!("recorder {SERIAL} connects to the cloud"),
        "online",
        if online { "online" } else { "not online" },
    );
    let site = cloud.with_model(|m| m.create_site(installer, "Bakery, Main St"))?;
    site_status_step(
        story,
        cloud,
        site,
        "installer creates the site \"Bakery, Main St\"",
        SiteStatus::NotInvited,
    )?;
    let wrong = cloud
        .execute_plan(|m| m.plan_add_to_site(installer, site, SERIAL, "AAAAAA"))
        .await;
    story.step(
        format!("installer adds {SERIAL} with a wrong verification code"),
        CloudError::WrongVerificationCode.to_string(),
        result_text(&wrong, "added"),
    );
    let added = cloud
        .execute_plan(|m| m.plan_add_to_site(installer, site, SERIAL, CODE))
        .await;
    story.done(
        format!("installer adds {SERIAL} to the site with its verification code"),
        &added,
        "added",
    );
    Ok(site)
}

/// A step whose outcome is the site's status.
fn site_status_step(
    story: &mut Story<'_>,
    cloud: &Cloud,
    site: SiteId,
    what: &str,
    promised: SiteStatus,
) -> Result<(), DemoError> {
    let status = cloud.with_model(|m| m.site_status(site))?;
    story.step(what, promised.to_string(), status.to_string());
    Ok(())
}

/// The permissions the installer asks for in the invitation, relative to
/// `now`: site information; live view valid now for 1 h; playback ended
/// 1 h ago; configuration from 1 h from now; may disable the cloud
/// service.
fn asked_permissions(serial: &Serial, now: u64) -> InstallerPermissions {
    let this_device = |not_before: u64, not_after: u64| {
        Some(DeviceGrant {
            devices: DeviceSelection::Only(vec![serial.clone()]),
            validity: Some(Validity {
                not_before,
                not_after,
            }),
        })
    };
    InstallerPermissions {
        site_info: Some(Grant { validity: None }),
        live_view: this_device(now - 60, now + 3600),
        playback: this_device(now - 7200, now - 3600),
        configuration: this_device(now + 3600, now + 7200),
        allow_disable_cloud: true,
    }
}

/// The installer invites the owner (who has no account yet), resends up
/// to the daily limit, and olivia registers; the first invitation and
/// olivia's account.
fn invite_owner(
    story: &mut Story<'_>,
    scene: &Scene<'_>,
    site: SiteId,
) -> Result<(InvitationId, AccountId), DemoError> {
    let (cloud, installer) = (scene.cloud, scene.installer());
    story.section("Handover: the installer invites the site owner");
    let now = cloud.now();
    let permissions = asked_permissions(&scene.serial, now);
    story.note(
        "asked permissions: site information; live view valid now for 1 h; playback ended 1 h ago; \
         configuration from 1 h from now; \"Allow me to disable the cloud service\"",
    );
    let first = cloud.with_model(|m| {
        m.invite(
            installer,
            site,
            Contact::email("olivia@example.com")?,
            permissions,
            "Handover of the bakery's recorder",
            now,
        )
    })?;
    site_status_step(
        story,
        cloud,
        site,
        "installer invites the owner by email olivia@example.com (no account yet)",
        SiteStatus::NotRegistered,
    )?;
    let mut resent = Vec::new();
    for _ in 0..4 {
        resent.push(cloud.with_model(|m| m.resend_invitation(installer, site, now)));
    }
    let sent = cloud.with_model(|m| m.invitations_sent_today(site, now))?;
    let resend_text = match resent.iter().find_map(|r| r.as_ref().err()) {
        Some(e) => e.to_string(),
        None => format!("{sent} invitations sent today"),
    };
    story.step(
        "installer resends the invitation 4 times before it is accepted",
        "5 invitations sent today",
        resend_text,
    );
    let sixth = cloud.with_model(|m| m.resend_invitation(installer, site, now));
    story.step(
        "installer sends a sixth invitation today",
        CloudError::InvitationLimit.to_string(),
        err_text(sixth),
    );
    let olivia = cloud.with_model(|m| {
        m.register_account(
            "olivia",
            Some("olivia@example.com"),
            Some("+49 151 0000 0001"),
            "EU",
        )
    })?;
    site_status_step(
        story,
        cloud,
        site,
        "olivia registers an account with olivia@example.com",
        SiteStatus::NotAccepted,
    )?;
    Ok((first, olivia))
}

/// Olivia cannot accept the superseded invitation, accepts the current
/// one, and the recorder is hers.
async fn hand_over(
    story: &mut Story<'_>,
    scene: &Scene<'_>,
    site: SiteId,
    first: InvitationId,
    olivia: &AccountId,
) -> Result<(), DemoError> {
    let cloud = scene.cloud;
    let old = cloud.accept_invitation(first, olivia).await;
    story.step(
        "olivia opens the first invitation (a newer one was sent since)",
        CloudError::InvitationInvalid.to_string(),
        err_text(old),
    );
    let current = cloud.with_model(|m| {
        m.site(site)
            .ok()
            .and_then(|s| s.current_invitation())
            .map(|i| i.id)
    });
    let accepted = match current {
        Some(id) => match cloud.accept_invitation(id, olivia).await {
            Ok(results) => {
                let status = cloud.with_model(|m| m.site_status(site))?;
                format!("{status} ({})", per_device_text(Ok(results), "handed over"))
            }
            Err(e) => e.to_string(),
        },
        None => "no current invitation".into(),
    };
    story.step(
        "olivia accepts the current invitation",
        format!("{} ({SERIAL}: handed over)", SiteStatus::HandedOver),
        accepted,
    );
    story.step(
        "olivia's live view of channel 1 (the streaming server asks the agent)",
        "allowed",
        scene.live_view(olivia, 1),
    );
    Ok(())
}

/// Olivia shares by email and by phone number; a missing account and one
/// in another region are refused; the shares are enforced on the device.
async fn share(story: &mut Story<'_>, scene: &Scene<'_>, olivia: &AccountId) {
    let people = scene.people;
    story.section("Sharing");
    let live_and_playback =
        ShareTerms::always(Permissions::of(&[Action::LiveView, Action::Playback]));
    let now = scene.cloud.now();
    let two_channels = ChannelSet::from_channels(&[1, 2]).unwrap_or_default();
    let one_day_of_two_channels = ShareTerms {
        permissions: Permissions::of(&[Action::LiveView]),
        channels: ChannelScope::Only(two_channels),
        validity: Some(Validity {
            not_before: now - 60,
            not_after: now + 86_400,
        }),
    };
    let shares = [
        (
            "olivia shares with frank@example.com (live view, playback)",
            "frank@example.com",
            live_and_playback,
            "Shared".to_owned(),
        ),
        (
            "olivia shares with the phone number +49 151 0000 0002 (live view of channels 1-2, for 24 h)",
            "+49 151 0000 0002",
            one_day_of_two_channels,
            "Shared".to_owned(),
        ),
        (
            "olivia shares with nobody@example.com",
            "nobody@example.com",
            live_and_playback,
            CloudError::AccountNotFound.to_string(),
        ),
        (
            "olivia shares with ursula@example.com (an account in region US)",
            "ursula@example.com",
            live_and_playback,
            CloudError::CrossRegionShare.to_string(),
        ),
    ];
    for (what, with, terms, promised) in shares {
        let outcome = scene.olivia_shares(olivia, with, terms).await;
        story.step(what, promised, outcome);
    }
    story.step(
        format!("olivia views the accounts {SERIAL} is shared to"),
        "frank@example.com, +4915100000002",
        list_text(scene.cloud, olivia),
    );
    story.step(
        "frank's live view of channel 1",
        "allowed",
        scene.live_view(&people.frank, 1),
    );
    story.step(
        "frank changes the configuration (the web server asks the agent)",
        denied(Reason::ActionNotGranted),
        decision_text(&scene.recorder.configure(&cloud_user(&people.frank))),
    );
    story.step(
        "fiona's live view of channel 3 (her share covers channels 1-2)",
        denied(Reason::ChannelOutOfScope),
        scene.live_view(&people.fiona, 3),
    );
}

/// The installer's grants, each checked against its validity window.
fn installer_after_handover(story: &mut Story<'_>, scene: &Scene<'_>) {
    let installer = cloud_user(scene.installer());
    story.section("The installer's permissions after handover");
    recorder_clock(story, scene);
    story.step(
        "installer's live view of channel 1 (granted, valid now)",
        "allowed",
        scene.live_view(scene.installer(), 1),
    );
    story.step(
        "installer's playback of channel 1 (granted until 1 h ago)",
        denied(Reason::Expired),
        decision_text(&scene.recorder.playback(&installer, 1)),
    );
    story.step(
        "installer changes the configuration (granted from 1 h from now)",
        denied(Reason::NotYetValid),
        decision_text(&scene.recorder.configure(&installer)),
    );
}

/// The recorder's wall clock is 10 minutes behind; it decides timed grants
/// by signed time from the cloud and reports the offset it measured.
fn recorder_clock(story: &mut Story<'_>, scene: &Scene<'_>) {
    let offset = scene.recorder.status().ok().and_then(|s| s.clock_offset_ms);
    let measured = match offset {
        Some(ms) => format!("{:+.3} s", ms as f64 / 1000.0),
        None => "none".into(),
    };
    let outcome = match offset {
        // Within a second of the clock's real lag: signed time holds.
        Some(ms) if (ms + CLOCK_BEHIND_SECS * 1000).abs() < 1000 => {
            format!("{} min behind signed time", CLOCK_BEHIND_SECS / 60)
        }
        Some(_) => "off by another amount".into(),
        None => "no signed time".into(),
    };
    story.step(
        format!(
            "recorder's wall clock against the cloud's signed time (measured offset {measured})"
        ),
        format!("{} min behind signed time", CLOCK_BEHIND_SECS / 60),
        outcome,
    );
}

/// The installer turns the cloud service off for the site (owner and
/// shares cut off, the installer not) and on again for the recorder.
async fn cloud_service_switch(
    story: &mut Story<'_>,
    scene: &Scene<'_>,
    site: SiteId,
    olivia: &AccountId,
) {
    let (cloud, installer) = (scene.cloud, scene.installer());
    story.section("The cloud service switch");
    let off = cloud
        .set_cloud_service_for_site(installer, site, false)
        .await;
    story.step(
        "installer turns the cloud service off for all devices of the site",
        format!("{SERIAL}: off"),
        per_device_text(off, "off"),
    );
    story.step(
        "olivia's live view of channel 1",
        denied(Reason::CloudServiceDisabled),
        scene.live_view(olivia, 1),
    );
    story.step(
        "frank's live view of channel 1",
        denied(Reason::CloudServiceDisabled),
        scene.live_view(&scene.people.frank, 1),
    );
    story.step(
        "installer's live view of channel 1 (the installer is not cut off)",
        "allowed",
        scene.live_view(installer, 1),
    );
    let on = cloud
        .execute_plan(|m| m.plan_set_cloud_service(installer, SERIAL, true))
        .await;
    story.done(
        format!("installer turns the cloud service of {SERIAL} on again"),
        &on,
        "on",
    );
    story.step(
        "olivia's live view of channel 1",
        "allowed",
        scene.live_view(olivia, 1),
    );
}

/// Olivia names the recorder; the device registers the name, and only
/// those it is shared with resolve it.
async fn domain_name(story: &mut Story<'_>, scene: &Scene<'_>, olivia: &AccountId) {
    let cloud = scene.cloud;
    story.section("The device domain name");
    let changed = cloud.set_domain(olivia, SERIAL, DOMAIN).await;
    let registered = match changed {
        Ok(()) => match cloud
            .wait_registration(&scene.serial, DOMAIN, REGISTRATION_WAIT)
            .await
        {
            Some(r) => format!(
                "changed; the device registered it from {}",
                crate::cloud::model::ip_text(&r.public_address)
            ),
            None => "changed, but the device did not register it".into(),
        },
        Err(e) => e.to_string(),
    };
    story.step(
        "olivia changes the domain name to bakery-main-st",
        "changed; the device registered it from 127.0.0.1",
        registered,
    );
    let address = ADDRESS;
    story.step(
        "olivia resolves bakery-main-st",
        address,
        scene.resolve(olivia),
    );
    story.step(
        "frank (valid share) resolves bakery-main-st",
        address,
        scene.resolve(&scene.people.frank),
    );
    story.step(
        "steve (no share) resolves bakery-main-st",
        CloudError::DomainNotShared.to_string(),
        scene.resolve(&scene.people.steve),
    );
}

/// Fiona leaves her share, olivia deletes frank's: both are cut off at
/// once.
async fn delete_shares(story: &mut Story<'_>, scene: &Scene<'_>, olivia: &AccountId) {
    let (cloud, people) = (scene.cloud, scene.people);
    story.section("Deleting shares");
    let left = cloud
        .execute_plan(|m| m.plan_leave_share(&people.fiona, SERIAL))
        .await;
    story.done(
        "fiona deletes the shared device from her side",
        &left,
        "deleted",
    );
    story.step(
        format!("olivia views the accounts {SERIAL} is shared to"),
        "frank@example.com",
        list_text(cloud, olivia),
    );
    // The streaming server holds frank's live view open and watches it.
    let mut stream = scene.recorder.client().ok();
    let watched = stream.as_mut().map(|s| {
        s.watch(
            FRANKS_STREAM,
            cloud_user(&people.frank),
            Action::LiveView,
            Some(1),
        )
    });
    let unshared_at = std::time::Instant::now();
    let removed = cloud
        .execute_plan(|m| m.plan_unshare(olivia, SERIAL, &["frank@example.com"]))
        .await;
    story.done(
        "olivia deletes the share of frank@example.com",
        &removed,
        "deleted",
    );
    let mut when = None;
    let cut = match (watched, stream.as_mut()) {
        (Some(Ok(_)), Some(stream)) => match stream.next_notice(NOTICE_WAIT) {
            Ok(Some(notice)) => {
                when = Some(unshared_at.elapsed());
                format!("cut: {}", notice.reason.text())
            }
            Ok(None) => "still streaming".to_string(),
            Err(e) => e.to_string(),
        },
        (Some(Err(e)), _) => e.to_string(),
        _ => "no streaming server".to_string(),
    };
    story.step(
        "frank's running live view of channel 1 (watched by the streaming server)",
        format!("cut: {}", Reason::NotAPrincipal.text()),
        cut,
    );
    if let Some(after) = when {
        story.note(&format!(
            "the stream was cut {:.1} ms after olivia's delete was sent",
            after.as_secs_f64() * 1e3
        ));
    }
    story.step(
        "frank's live view of channel 1, right after",
        denied(Reason::NotAPrincipal),
        scene.live_view(&people.frank, 1),
    );
    story.step(
        "frank resolves bakery-main-st",
        CloudError::DomainNotShared.to_string(),
        scene.resolve(&people.frank),
    );
}
