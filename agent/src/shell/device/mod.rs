//! The agent: the device state with everything around it (store, keys,
//! audit ring, outbox, domain registrar), carrying out the core's effects.
//! It does no network I/O and reads no clock: the event loop hands it
//! events with the time, and takes messages from its outbox. Its one I/O
//! is the state store, because an acknowledgement must wait for flash.

use hc_protocol::codec;
use hc_protocol::ddns::DomainResult;
use hc_protocol::envelope::CommandKeys;
use hc_protocol::limits::{MAX_COMMAND_BYTES, MAX_MESSAGE_BYTES};
use hc_protocol::local::LinkState;
use hc_protocol::messages::{AuditActor, AuditEntry, AuditEvent, AuditReport, DeviceStatus};
use hc_protocol::topics::Leaf;
use hc_protocol::{Outcome, Reason};
use serde::Serialize;
use tracing::{debug, error, info, warn};

use crate::core::domain::{NetworkFacts, Registrar};
use crate::core::outbox::{Outbox, Outgoing};
use crate::core::time::{TimePolicy, TrustedTime};
use crate::core::watch::Watches;
use crate::core::{
    handle_command, storage_failed, Applied, AuditRing, DeviceState, Effect, Effects,
};
use crate::shell::clock::Reading;
use crate::store::{Flash, StateStore};

mod local;

/// What the link saw happen to the device's MQTT session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// The broker keeps closing the connection soon after accepting it.
    Contested,
    /// The broker accepted the device without its persistent session.
    Lost,
}

#[derive(Debug, Default)]
struct SessionCounts {
    contested: u32,
    lost: u32,
}
mod time;

/// The device: its state and everything around it (store, command keys,
/// audit ring, outbox, domain registrar), over the flash `F`.
pub struct Agent<F: Flash> {
    state: DeviceState,
    store: StateStore<F>,
    /// The configuration's command keys: the key ring until a key command
    /// sets the state's own (`DeviceState::key_ring`).
    keys: CommandKeys,
    audit: AuditRing,
    outbox: Outbox,
    registrar: Registrar,
    link: LinkState,
    /// The floor at which the state must be written again, from the state
    /// last read from or written to flash (`DeviceState::next_clock_checkpoint`).
    /// Kept here so that a decision does not look at every grant.
    clock_checkpoint: Option<u64>,
    /// The network facts last read, so that a renamed domain is registered
    /// at once.
    network: Option<NetworkFacts>,
    /// Sessions the firmware's processes watch (see `local`).
    watches: Watches,
    /// Signed time from the cloud (see `time`).
    time: TrustedTime,
    /// The clocks as last read, for the status reply's offset.
    reading: Reading,
    /// The wall clock's offset at the last accepted time answer, for the
    /// state report.
    offset_at_answer: Option<i64>,
    /// Contested and lost sessions since start-up (see `session_event`).
    sessions: SessionCounts,
    /// When the certificate the device connects with ends (the credential
    /// store tells; `None` without TLS).
    certificate_not_after: Option<u64>,
}

impl<F: Flash> Agent<F> {
    /// The agent over a loaded (or fresh) state and its store.
    pub fn new(
        state: DeviceState,
        store: StateStore<F>,
        keys: CommandKeys,
        registrar: Registrar,
    ) -> Self {
        Agent {
            clock_checkpoint: state.next_clock_checkpoint(),
            state,
            store,
            keys,
            audit: AuditRing::new(),
            outbox: Outbox::new(),
            registrar,
            link: LinkState::Connecting,
            network: None,
            watches: Watches::new(),
            time: TrustedTime::new(TimePolicy::default()),
            reading: Reading::default(),
            offset_at_answer: None,
            sessions: SessionCounts::default(),
            certificate_not_after: None,
        }
    }

    /// The certificate the device connects with ends at `not_after` (a
    /// renewal switched to a new one, or the agent started): reported in
    /// the state report and the status reply.
    pub fn set_certificate_not_after(&mut self, not_after: Option<u64>) {
        if self.certificate_not_after != not_after {
            self.certificate_not_after = not_after;
            // Before the first connection the report goes out on connect.
            if self.link == LinkState::Connected {
                self.queue_state_report();
            }
        }
    }

    /// The configuration's command keys changed (a reload): commands from
    /// now on are checked against them, unless the cloud set the key ring
    /// by command. Then that ring stays in force: a configuration file must
    /// not undo a rotation the cloud made (SPEC §6.2); the new keys are
    /// only the factory anchor a device without state starts from.
    pub fn set_command_keys(&mut self, keys: CommandKeys) {
        if let Some(ring) = &self.state.command_keys {
            if *ring != keys {
                warn!(
                    held = ?ring.ids().as_slice(),
                    configured = ?keys.ids().as_slice(),
                    "command keys were set by the cloud's key commands; the configuration's keys are not used"
                );
            }
        }
        self.keys = keys;
    }

    /// The keys commands and time answers are verified with now.
    pub fn key_ring(&self) -> &CommandKeys {
        self.state.key_ring(&self.keys)
    }

    /// The device state in memory (what is on flash, or newer by read-only
    /// ledger entries and the clock floor).
    pub fn state(&self) -> &DeviceState {
        &self.state
    }

    /// Whether the device admin lets the cloud link be open.
    pub fn platform_access(&self) -> bool {
        self.state.access.platform_access
    }

    /// A reading of the device clock (see core::time).
    pub fn observe_clock(&mut self, now: u64) {
        self.state.clock.observe(now);
        self.checkpoint_clock();
    }

    /// Writes the state when the trusted-time floor has passed the end of
    /// a grant since it was last written, so that no power cut can take the
    /// floor back below that end. A failed write is retried at the next
    /// reading; the decisions in memory are not affected by it.
    fn checkpoint_clock(&mut self) {
        let floor = self.state.clock.floor();
        if self.clock_checkpoint.is_none_or(|end| floor < end) {
            return;
        }
        match self.save_current() {
            Ok(()) => info!(floor, "trusted-time floor written: a grant ended"),
            Err(e) => error!(error = %e, "trusted-time floor could not be written; retrying"),
        }
    }

    /// Every write of a state goes through here, so the next clock
    /// checkpoint always follows what is on flash. (Fields, not `self`, so
    /// that the state in memory can be written without a copy.)
    fn save_to(
        store: &mut StateStore<F>,
        clock_checkpoint: &mut Option<u64>,
        state: &DeviceState,
    ) -> Result<(), crate::store::StoreError> {
        store.save(state)?;
        *clock_checkpoint = state.next_clock_checkpoint();
        Ok(())
    }

    /// Writes the state in memory as it is.
    fn save_current(&mut self) -> Result<(), crate::store::StoreError> {
        Self::save_to(&mut self.store, &mut self.clock_checkpoint, &self.state)
    }

    /// The wall-clock second at which the trusted-time floor passes a
    /// grant's end and must be written (see `observe_clock`).
    pub fn next_clock_checkpoint(&self) -> Option<u64> {
        self.clock_checkpoint
    }

    /// The wall-clock second at which a domain registration (a retry or a
    /// refresh) falls due, given fresh network facts.
    pub fn registration_due_at(&self) -> Option<u64> {
        self.registrar.next_wakeup()
    }

    /// The link's state, as the status reply shows it.
    pub fn set_link(&mut self, link: LinkState) {
        self.link = link;
    }

    /// The flash under the state store (tests arm faults through it).
    #[cfg(any(test, feature = "testing"))]
    pub fn store_flash(&mut self) -> &mut F {
        self.store.flash()
    }

    /// The domain registrar (the driver tells it about connections).
    pub fn registrar(&mut self) -> &mut Registrar {
        &mut self.registrar
    }

    /// A command envelope arrived on the command topic.
    pub fn on_command(&mut self, payload: &[u8], now: u64) {
        let applied = self.plan_command(payload, now);
        self.commit_command(applied, now);
    }

    /// The first half of `on_command`: the command opened, checked and
    /// applied in memory; nothing carried out yet.
    pub fn plan_command(&mut self, payload: &[u8], now: u64) -> Applied {
        self.observe_clock(now);
        let applied = handle_command(&self.state, payload, &self.keys, now);
        match applied.audit.event {
            AuditEvent::EnvelopeRefused => {
                warn!(outcome = ?applied.outcome, bytes = payload.len(), "command envelope refused")
            }
            AuditEvent::Command { kind, seq } => debug!(seq, ?kind, "command verified"),
            _ => {}
        }
        applied
    }

    /// The second half of `on_command`: the plan carried out (the state to
    /// flash first), audited and logged.
    pub fn commit_command(&mut self, applied: Applied, now: u64) {
        let mut audit = applied.audit.clone();
        // Logged once the outcome is final: a change whose state cannot
        // reach flash is refused, not accepted.
        let redelivered = applied.redelivered;
        if let Err(reason) = self.carry_out(applied.state, &applied.effects, now) {
            audit.outcome = Outcome::Refused(reason);
        }
        if let AuditEvent::Command { kind, seq } = audit.event {
            let actor = match &audit.actor {
                AuditActor::Cloud(id) => id.as_str(),
                _ => "",
            };
            match audit.outcome {
                Outcome::Accepted => {
                    info!(seq, actor, ?kind, redelivered, "command accepted")
                }
                Outcome::Refused(reason) => {
                    info!(seq, actor, ?kind, %reason, redelivered, "command refused")
                }
            }
        }
        self.audit.record(audit);
        // A read-only command is not written by itself, but its issue time
        // may have carried the floor past a grant's end.
        self.checkpoint_clock();
    }

    /// Carries out a step's effects in order. If persisting fails, the new
    /// state is dropped and only the core's `storage_failed` effects are
    /// carried out: nothing is acknowledged that did not reach flash.
    fn carry_out(&mut self, next: DeviceState, effects: &Effects, now: u64) -> Result<(), Reason> {
        if effects.contains(&Effect::Persist) {
            if let Err(e) = Self::save_to(&mut self.store, &mut self.clock_checkpoint, &next) {
                error!(error = %e, "state could not be written; the change is refused");
                for effect in &storage_failed(effects) {
                    self.carry_out_effect(effect, now);
                }
                return Err(Reason::StorageFailed);
            }
        }
        self.state = next;
        for effect in effects {
            self.carry_out_effect(effect, now);
        }
        Ok(())
    }

    fn carry_out_effect(&mut self, effect: &Effect, now: u64) {
        match effect {
            Effect::Persist => {}
            Effect::Ack(ack) => self.queue(Leaf::Ack, ack),
            Effect::PublishState => self.queue_state_report(),
            Effect::PublishAudit { max } => {
                let report = AuditReport {
                    serial: self.state.identity.serial.clone(),
                    entries: self.audit.recent(*max),
                };
                self.queue(Leaf::Audit, &report);
            }
            Effect::RegisterDomain => {
                if self.state.access.domain != *self.registrar.domain() {
                    info!(domain = %self.state.access.domain, "domain name changed");
                    self.registrar.set_domain(self.state.access.domain.clone());
                    // Registered at once where the network is known; the
                    // facts are re-read at the next network check anyway.
                    if let Some(facts) = self.network.clone() {
                        self.observe_network(facts, now);
                    }
                }
            }
            Effect::CloudLink { enabled } => {
                info!(enabled, "platform access switched");
                self.link = if *enabled {
                    LinkState::Connecting
                } else {
                    LinkState::Disabled
                };
            }
        }
    }

    /// A domain registration result arrived.
    pub fn on_domain_result(&mut self, payload: &[u8], now: u64, random: u32) {
        match codec::decode::<DomainResult>(payload, MAX_MESSAGE_BYTES) {
            Ok(result) => {
                let before = self.registrar.state();
                self.registrar.on_result(result, now, random);
                let after = self.registrar.state();
                if before != after {
                    match after {
                        hc_protocol::local::RegistrationState::NameTaken => {
                            error!(domain = %self.state.access.domain, "domain name is taken by another device; not retrying until it changes")
                        }
                        hc_protocol::local::RegistrationState::Invalid => {
                            error!(domain = %self.state.access.domain, "domain name refused by the cloud; not retrying until it changes")
                        }
                        state => info!(?state, "domain registration"),
                    }
                }
            }
            Err(e) => warn!(error = %e, "domain result refused"),
        }
    }

    /// Network facts were read; registers the domain if due.
    pub fn observe_network(&mut self, facts: NetworkFacts, now: u64) {
        self.network = Some(facts.clone());
        if let Some(registration) = self.registrar.observe(facts, now) {
            info!(domain = %registration.domain, attempt = registration.attempt, "registering domain");
            self.queue(Leaf::DomainRegister, &registration);
        }
    }

    /// The state report (the access list as the cloud sees it).
    pub fn state_report(&self) -> hc_protocol::messages::StateReport {
        let mut report = self
            .state
            .report(crate::VERSION, self.outbox.dropped(), &self.keys);
        report.clock_offset_ms = self.offset_at_answer;
        report.sessions_contested = self.sessions.contested;
        report.sessions_lost = self.sessions.lost;
        report.certificate_not_after = self.certificate_not_after;
        report
    }

    /// The link saw the device's session contested or lost: audited,
    /// counted in the state report, and the report sent again.
    pub fn session_event(&mut self, event: SessionEvent) {
        let (counter, audited) = match event {
            SessionEvent::Contested => (&mut self.sessions.contested, AuditEvent::SessionContested),
            SessionEvent::Lost => (&mut self.sessions.lost, AuditEvent::SessionLost),
        };
        *counter = counter.saturating_add(1);
        let at = self.state.clock.floor();
        self.audit.record(AuditEntry {
            at,
            actor: AuditActor::Device,
            event: audited,
            outcome: Outcome::Accepted,
        });
        self.queue_state_report();
    }

    /// Queues the retained state report for the cloud.
    pub fn queue_state_report(&mut self) {
        let report = self.state_report();
        self.queue(Leaf::State, &report);
    }

    /// The retained status payload: online or offline, written at `now`
    /// (trusted time, `Agent::now`), promising a refresh every `refresh_s`
    /// (0 offline).
    pub fn status_payload(online: bool, now: u64, refresh_s: u32) -> Vec<u8> {
        let status = if online {
            DeviceStatus::online(now, refresh_s)
        } else {
            DeviceStatus::offline(now)
        };
        // A bool and two integers always encode (16 bytes at most).
        codec::encode(&status, MAX_MESSAGE_BYTES).unwrap_or_default()
    }

    fn queue<T: Serialize>(&mut self, leaf: Leaf, message: &T) {
        let limit = if leaf == Leaf::Command {
            MAX_COMMAND_BYTES
        } else {
            MAX_MESSAGE_BYTES
        };
        match codec::encode(message, limit) {
            Ok(payload) => {
                if let Some(lost) = self.outbox.push(Outgoing { leaf, payload }) {
                    warn!(leaf = ?lost.leaf, dropped = self.outbox.dropped(), "outbox full: oldest message dropped");
                }
            }
            Err(e) => error!(error = %e, ?leaf, "message could not be encoded"),
        }
    }

    /// The messages waiting for the cloud.
    pub fn outbox(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    /// Writes the state once more (at shutdown: the ledger of read-only
    /// commands is otherwise written only with the next change).
    pub fn flush(&mut self) -> Result<(), crate::store::StoreError> {
        self.save_current()
    }
}
