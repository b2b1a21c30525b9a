//! The product flows issue 17 added on the wire that take more than one
//! planned command: the documents' domain-only share (its cross-region
//! refusal worded as the product does), and handovers re-sent to devices
//! that were offline until each acknowledges. The single-command flows
//! (installer rights, deleting, removing from a site) go through
//! [`Cloud::execute_plan`].

use std::time::Duration;

use hc_protocol::{AccountId, Reason};
use tokio::time::Instant;

use super::link::Cloud;
use super::now_secs;
use crate::cloud::model::CloudError;

/// How often the re-sender looks again when nothing arrives.
const RESEND_POLL: Duration = Duration::from_secs(1);

impl Cloud {
    /// The owner shares the device's domain name (the documents' share).
    pub async fn share_domain(
        &self,
        owner: &AccountId,
        serial: &str,
        with: &str,
    ) -> Result<(), CloudError> {
        let planned = self.with_model(|m| m.plan_share_domain(owner, serial, with))?;
        match self.execute(planned).await {
            Err(CloudError::DeviceRefused {
                reason: Reason::CrossRegion,
                ..
            }) => Err(CloudError::CrossRegionShare),
            other => other,
        }
    }

    /// Starts re-sending pending handovers in the background (if it is not
    /// already): each device gets its `Handover` again whenever it is
    /// online, until it acknowledges. A device that refuses is dropped
    /// from the pending list (its refusal is final).
    pub fn keep_resending_handovers(&self) {
        let mut shared = self.lock();
        if shared.resender.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let cloud = self.detached();
        shared.resender = Some(tokio::spawn(async move { cloud.resend_handovers().await }));
    }

    async fn resend_handovers(self) {
        loop {
            let pending = self.with_model(|m| m.pending_handovers(now_secs()));
            if pending.is_empty() {
                return;
            }
            for planned in pending {
                if self.online(&planned.serial) != Some(true) {
                    continue;
                }
                let serial = planned.serial.clone();
                if let Err(CloudError::DeviceRefused { .. }) = self.execute(planned).await {
                    self.with_model(|m| m.drop_pending_handover(&serial));
                }
            }
            self.next_change(RESEND_POLL).await;
        }
    }

    /// Waits until no handover is pending (true) or `timeout` passed.
    pub async fn wait_handovers(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.with_model(|m| m.pending_handovers(0).is_empty()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.next_change(RESEND_POLL.min(deadline - Instant::now()))
                .await;
        }
    }
}
