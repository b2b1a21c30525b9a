//! The cloud's operations on devices: signing and sending one command
//! and waiting for its acknowledgement within the timeout ("Network
//! busy" otherwise, with stale sequence numbers skipped), executing what
//! the model planned, and the product operations built on them.

use std::time::Duration;

use hc_protocol::access::Action;
use hc_protocol::limits::RECENT_OUTCOMES;
use hc_protocol::messages::StateReport;
use hc_protocol::topics::{self, Leaf};
use hc_protocol::{AccountId, AccountRef, Ack, Command, CommandBody, Outcome, Reason, Serial};
use rumqttc::QoS;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::link::Cloud;
use super::now_secs;
use crate::cloud::model::{
    CloudError, CloudModel, InvitationId, PerDevice, Planned, Resolution, ShareTerms, SiteId,
};

/// How long an accepted change waits for the device's new state report.
const STATE_WAIT: Duration = Duration::from_secs(2);
/// Stale sequence numbers are retried at most this often per command.
const MAX_SEQ_RETRIES: u32 = 8;

impl Cloud {
    fn busy(&self, serial: &Serial) -> CloudError {
        CloudError::NetworkBusy {
            serial: serial.to_string(),
            waited_ms: self.ack_timeout().as_millis() as u64,
        }
    }

    /// Signs and sends one command and waits for its acknowledgement, all
    /// within the acknowledgement timeout: `NetworkBusy` if the device is
    /// offline or does not answer in time. A refusal by the device is an
    /// `Ack` with `Outcome::Refused`, not an error.
    pub async fn send(
        &self,
        serial: &Serial,
        actor: AccountRef,
        body: CommandBody,
    ) -> Result<Ack, CloudError> {
        let deadline = Instant::now() + self.ack_timeout();
        let ready = self
            .wait_until(deadline, |s| {
                s.links
                    .get(serial)
                    .is_some_and(|l| l.online(now_secs()) == Some(true) && l.next_seq.is_some())
            })
            .await;
        if !ready {
            return Err(self.busy(serial));
        }
        let mut retries = 0;
        loop {
            let (seq, ack) = self.send_once(serial, &actor, &body, deadline).await?;
            let stale =
                ack.redelivered || ack.outcome == Outcome::Refused(Reason::ReplayedSequence);
            if stale && retries < MAX_SEQ_RETRIES {
                // Another cloud process used this number: jump past it.
                let jump = (RECENT_OUTCOMES as u64) << retries;
                let mut shared = self.lock();
                let link = shared.links.entry(serial.clone()).or_default();
                link.next_seq = Some(link.next_seq.unwrap_or(0).max(seq + 1 + jump));
                retries += 1;
                continue;
            }
            return Ok(ack);
        }
    }

    /// One attempt: the device's next sequence number, the signed command
    /// published, and its acknowledgement by `deadline`.
    async fn send_once(
        &self,
        serial: &Serial,
        actor: &AccountRef,
        body: &CommandBody,
        deadline: Instant,
    ) -> Result<(u64, Ack), CloudError> {
        let (tx, rx) = oneshot::channel();
        let seq = self.lock().reserve_seq(serial, tx);
        let command = Command {
            serial: serial.clone(),
            actor: actor.clone(),
            seq,
            issued_at: now_secs(),
            body: body.clone(),
        };
        let envelope = self.signer.seal(&command).map_err(|e| {
            self.lock().forget(serial, seq);
            CloudError::invalid("command", e)
        })?;
        let topic = topics::topic(serial, Leaf::Command);
        let published = self
            .client
            .publish(topic, QoS::AtLeastOnce, false, envelope)
            .await;
        let ack = match published {
            Ok(()) => tokio::time::timeout_at(deadline, rx).await.ok(),
            Err(_) => None,
        };
        match ack {
            Some(Ok(ack)) => Ok((seq, ack)),
            _ => {
                self.lock().forget(serial, seq);
                Err(self.busy(serial))
            }
        }
    }

    /// Sends a planned command; on acceptance records its commit in the
    /// model and waits (briefly) for the device's new state report, so
    /// that what follows sees the change.
    pub async fn execute(&self, planned: Planned) -> Result<(), CloudError> {
        let expect_change = {
            let shared = self.lock();
            expects_state_change(shared.model.report(&planned.serial), &planned.body)
        };
        let ack = self
            .send(&planned.serial, planned.actor.clone(), planned.body.clone())
            .await?;
        match ack.outcome {
            Outcome::Accepted => {
                self.with_model(|m| m.commit(&planned.on_accept));
                if let (true, Some(seq)) = (expect_change, ack.seq) {
                    self.wait_state(&planned.serial, |r| r.last_seq >= seq, STATE_WAIT)
                        .await;
                }
                Ok(())
            }
            Outcome::Refused(reason) => Err(CloudError::DeviceRefused {
                serial: planned.serial.to_string(),
                reason,
            }),
        }
    }

    /// Executes what the model plans, if it allows it: the one path of
    /// every operation that is a single command (`cloud.execute_plan(|m|
    /// m.plan_delete_device(owner, serial))`).
    pub async fn execute_plan(
        &self,
        plan: impl FnOnce(&mut CloudModel) -> Result<Planned, CloudError>,
    ) -> Result<(), CloudError> {
        let planned = self.with_model(plan)?;
        self.execute(planned).await
    }

    async fn execute_each(&self, plans: PerDevice<Planned>) -> PerDevice<()> {
        let mut results = Vec::with_capacity(plans.len());
        for (serial, plan) in plans {
            let result = match plan {
                Ok(planned) => self.execute(planned).await,
                Err(e) => Err(e),
            };
            results.push((serial, result));
        }
        results
    }

    /// The invitee accepts: the site is handed over and each device gets
    /// its `Handover`; the outcome per device.
    pub async fn accept_invitation(
        &self,
        invitation: InvitationId,
        account: &AccountId,
    ) -> Result<PerDevice<()>, CloudError> {
        let now = self.now();
        let plan = self.with_model(|m| m.accept_invitation(invitation, account, now))?;
        let plans = plan
            .commands
            .into_iter()
            .map(|p| (p.serial.clone(), Ok(p)))
            .collect();
        let results = self.execute_each(plans).await;
        // A device that did not answer keeps its handover pending: sent
        // again when it is back.
        self.keep_resending_handovers();
        Ok(results)
    }

    /// The owner shares a device with an account named by email, phone
    /// number or user name. `Ok` is the product's "Shared".
    pub async fn share(
        &self,
        owner: &AccountId,
        serial: &str,
        with: &str,
        terms: ShareTerms,
    ) -> Result<(), CloudError> {
        let planned = self.with_model(|m| m.plan_share(owner, serial, with, terms))?;
        match self.execute(planned).await {
            Err(CloudError::DeviceRefused {
                reason: Reason::CrossRegion,
                ..
            }) => Err(CloudError::CrossRegionShare),
            other => other,
        }
    }

    /// The installer switches the cloud service of every device of a site.
    pub async fn set_cloud_service_for_site(
        &self,
        installer: &AccountId,
        site: SiteId,
        enabled: bool,
    ) -> Result<PerDevice<()>, CloudError> {
        let plans =
            self.with_model(|m| m.plan_set_cloud_service_for_site(installer, site, enabled))?;
        Ok(self.execute_each(plans).await)
    }

    /// The owner changes the device domain name.
    pub async fn set_domain(
        &self,
        owner: &AccountId,
        serial: &str,
        name: &str,
    ) -> Result<(), CloudError> {
        let now = self.now();
        self.execute_plan(|m| m.plan_set_domain(owner, serial, name, now))
            .await
    }

    /// Resolves a device domain for `requester` (cloud time now).
    pub fn resolve_domain(
        &self,
        requester: &AccountId,
        name: &str,
    ) -> Result<Resolution, CloudError> {
        let now = self.now();
        self.with_model(|m| m.resolve_domain(requester, name, now))
    }

    /// Asks the device, through the cloud, whether `actor` may do `action`
    /// on `channel` now (the device decides; a denial is `DeviceRefused`).
    pub async fn operation(
        &self,
        actor: &AccountId,
        serial: &str,
        action: Action,
        channel: Option<u16>,
    ) -> Result<(), CloudError> {
        let (account, device) = self.with_model(|m| {
            let account = m.account(actor)?.account_ref();
            let device = m.device(serial)?.serial.clone();
            Ok::<_, CloudError>((account, device))
        })?;
        self.execute(Planned::new(
            device,
            account,
            CommandBody::Operation { action, channel },
        ))
        .await
    }
}

/// Whether a device that accepts `body` publishes a new state report.
fn expects_state_change(report: Option<&StateReport>, body: &CommandBody) -> bool {
    match body {
        CommandBody::Operation { .. } | CommandBody::RequestAudit { .. } => false,
        CommandBody::SetCloudService { enabled } => {
            report.is_none_or(|r| r.cloud_service != *enabled)
        }
        CommandBody::SetDomain { name } => {
            report.is_none_or(|r| r.domain.as_str() != name.as_str())
        }
        _ => true,
    }
}
