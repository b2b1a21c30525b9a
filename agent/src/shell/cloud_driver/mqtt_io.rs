//! The driver's MQTT side: what the link asks for carried out on the MQTT
//! client, and what the MQTT connection reports fed to the link and the
//! agent; messages and acknowledgements handed over as far as the link
//! allows.

use hc_protocol::topics::{self, Leaf};
use ring::rand::SecureRandom;
use rumqttc::{Event, Outgoing, Packet, Publish, QoS, SubscribeReasonCode};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::Driver;
use crate::core::link::{LinkEvent, LossCause, Transmit, CONTESTED_CLOSES, POISON_STRIKES};
use crate::shell::device::Agent;
use crate::shell::device::SessionEvent;
use crate::shell::mqtt_error::MqttError;
use crate::shell::mqtt_task::MqttEvent;
use crate::store::RealFlash;

/// A command applied in memory, waiting to be carried out: the driver
/// first lets the local socket's tasks write the notices it caused.
pub(super) struct Planned {
    applied: crate::core::Applied,
    publish: Publish,
    attempt: u32,
}

impl Driver<'_> {
    /// Carries out what the link asks for and reports what happened.
    pub(super) fn carry_out_link(&mut self) {
        while let Some(transmit) = self.link.poll_transmit() {
            match transmit {
                Transmit::Connect {
                    attempt,
                    clean_session,
                    endpoint,
                } => {
                    debug!(attempt, clean_session, endpoint, "connecting to the cloud");
                    // A certificate renewed on disk is used from now on.
                    let now = self.shared.now();
                    if let (Some(tls), Some(renewal)) = (self.tls.as_mut(), self.renewal.as_mut()) {
                        if let Some(config) = renewal.before_attempt(tls, now) {
                            self.mqtt.set_tls(config);
                        }
                    }
                    // The will is fixed in the CONNECT: it says offline
                    // since this connect, the last time the device is
                    // known to have been alive should the broker publish it.
                    let now = self.shared.now();
                    self.mqtt.connect(attempt, clean_session, endpoint, now);
                }
                Transmit::Abort { attempt } => {
                    debug!(attempt, "connection dropped");
                    self.mqtt.abort();
                }
                Transmit::Subscribe => self.subscribe(),
                Transmit::Status { online, refresh_s } => {
                    let now = self.shared.now();
                    let _ = self.client.try_publish(
                        topics::topic(&self.serial, Leaf::Status),
                        QoS::AtLeastOnce,
                        true,
                        Agent::<RealFlash>::status_payload(online, now, refresh_s),
                    );
                }
                Transmit::Disconnect => {
                    let _ = self.client.try_disconnect();
                }
            }
        }
        while let Some(event) = self.link.poll_event() {
            self.on_link_event(event);
        }
        self.shared.agent.borrow_mut().set_link(self.link.state());
    }

    fn on_link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Connected { .. } => self.renewal_on_connected(),
            LinkEvent::ConnectFailed { .. } | LinkEvent::Lost { .. } | LinkEvent::Closed => {
                let attempt_failed = matches!(event, LinkEvent::ConnectFailed { .. });
                if let Some(renewal) = self.renewal.as_mut() {
                    renewal.on_disconnected(attempt_failed);
                }
            }
            _ => {}
        }
        let error = self.connection_error.take();
        let error = error.as_ref().map(|e| e as &dyn std::error::Error);
        let mut agent = self.shared.agent.borrow_mut();
        match event {
            LinkEvent::Connected { session_present } => {
                info!(session_present, "connected to the cloud");
                agent.queue_state_report();
                agent.time().on_connected(self.shared.clocks.read().mono_ms);
                agent.registrar().on_connected();
                self.next_network_check = Some(Instant::now());
            }
            LinkEvent::ConnectFailed {
                timed_out,
                retry_in,
            } => {
                let retry_in_ms = retry_in.as_millis() as u64;
                if timed_out {
                    warn!(
                        timeout_secs = self.config.cloud.connect_timeout_secs,
                        retry_in_ms, "cloud connection failed: no answer in time"
                    );
                } else {
                    warn!(error, retry_in_ms, "cloud connection failed");
                }
            }
            LinkEvent::Lost { cause, retry_in } => {
                let retry_in_ms = retry_in.as_millis() as u64;
                match cause {
                    LossCause::Error => warn!(error, retry_in_ms, "cloud link lost"),
                    LossCause::Silent => warn!(retry_in_ms, "cloud link lost: nothing from the broker for 1.5 keep-alive intervals"),
                    LossCause::TooManyUnacked => warn!(retry_in_ms, "cloud link lost: the broker sent more unacknowledged messages than the device holds"),
                    LossCause::Undecodable => warn!(error, retry_in_ms, "cloud link lost: the broker sent a message the device cannot take"),
                    LossCause::ClosedByBroker => warn!(retry_in_ms, "cloud link lost: the broker closed the connection"),
                }
                agent.registrar().on_disconnected();
                agent.time().on_disconnected();
            }
            LinkEvent::Closed => {
                info!("cloud link closed");
                agent.registrar().on_disconnected();
                agent.time().on_disconnected();
            }
            LinkEvent::SessionContested => {
                warn!(
                    closes = CONTESTED_CLOSES,
                    "the broker keeps closing this device's connection soon after accepting it: another client may be taking its session (a certificate the broker does not bind to this client id), or the broker is flapping"
                );
                agent.session_event(SessionEvent::Contested);
            }
            LinkEvent::SessionLost => {
                warn!("the broker no longer holds this device's persistent session: what it had queued is lost (a broker that lost its store, or a client that took the session)");
                agent.session_event(SessionEvent::Lost);
            }
            LinkEvent::SessionDiscarded => warn!(
                strikes = POISON_STRIKES,
                "a message broke the cloud link again and again: the broker's session was started afresh (its queued messages are dropped; the cloud re-sends what was not acknowledged)"
            ),
            LinkEvent::SubscriptionRefused { retry_in } => warn!(
                retry_in_ms = retry_in.as_millis() as u64,
                "the broker refused a subscription (no commands arrive without it): subscribing again"
            ),
        }
    }

    fn subscribe(&self) {
        for leaf in Leaf::ALL.into_iter().filter(|l| l.is_inbound()) {
            if let Err(e) = self
                .client
                .try_subscribe(topics::topic(&self.serial, leaf), QoS::AtLeastOnce)
            {
                error!(error = %e, ?leaf, "subscribe could not be queued");
            }
        }
    }

    /// Feeds an MQTT event to the link and the agent. A command comes back
    /// planned but not yet carried out (see `Planned`).
    pub(super) fn on_mqtt(&mut self, event: MqttEvent) -> Option<Planned> {
        let (now, attempt) = (self.millis(), event.attempt);
        self.link.handle_inflight(attempt, event.inflight);
        match event.event {
            Ok(Event::Incoming(packet)) => {
                self.link.handle_incoming(attempt, now);
                match packet {
                    Packet::ConnAck(ack) => self.link.handle_connack(
                        attempt,
                        ack.session_present,
                        event.pending_publishes,
                        now,
                    ),
                    Packet::SubAck(ack) => {
                        let refused = ack
                            .return_codes
                            .iter()
                            .any(|code| matches!(code, SubscribeReasonCode::Failure));
                        let random = self.random();
                        self.link.handle_suback(attempt, refused, now, random);
                    }
                    Packet::Publish(publish) => {
                        if let Some(applied) = self.plan_command(&publish) {
                            return Some(Planned {
                                applied,
                                publish,
                                attempt,
                            });
                        }
                        self.on_publish(&publish);
                        self.owe_puback(attempt, &publish);
                    }
                    other => debug!(packet = ?other, "mqtt"),
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                self.link.handle_written(attempt);
                debug!(pkid, "mqtt publish written");
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                self.link.handle_disconnect_written(attempt)
            }
            Ok(Event::Outgoing(_)) => {}
            Err(e) => {
                let kind = MqttError::of(&e);
                self.connection_error = Some(e);
                let random = self.random();
                match kind {
                    MqttError::Undecodable => self.link.handle_undecodable(attempt, now, random),
                    MqttError::ClosedByBroker => {
                        self.link.handle_closed_by_broker(attempt, now, random)
                    }
                    MqttError::Other => self.link.handle_error(attempt, now, random),
                }
            }
        }
        None
    }

    /// A command for this device, opened and applied in memory only; the
    /// watched sessions its new state denies are told at once (before the
    /// state reaches flash: a notice that turns out unneeded, when the
    /// write fails, errs on the side of stopping a stream).
    fn plan_command(&mut self, publish: &Publish) -> Option<crate::core::Applied> {
        match topics::parse(&publish.topic) {
            Some((s, Leaf::Command)) if s == self.serial => {
                let now = self.shared.now();
                let mut applied = self
                    .shared
                    .agent
                    .borrow_mut()
                    .plan_command(&publish.payload, now);
                // A renewed certificate is checked and on flash before its
                // command's outcome is.
                self.install_certificate(&mut applied);
                self.shared.revoke_denied_in(Some(&applied.state), now);
                Some(applied)
            }
            _ => None,
        }
    }

    /// Carries out a planned command: its state to flash, then its
    /// answers, then the PUBACK is owed.
    pub(super) fn commit(&mut self, planned: Planned) {
        let now = self.shared.now();
        self.shared
            .agent
            .borrow_mut()
            .commit_command(planned.applied, now);
        self.shared.revoke_denied(now);
        self.owe_puback(planned.attempt, &planned.publish);
    }

    fn owe_puback(&mut self, attempt: u32, publish: &Publish) {
        if publish.qos != QoS::AtMostOnce {
            let random = self.random();
            self.link
                .handle_delivery(attempt, publish.pkid, self.millis(), random);
        }
    }

    /// A message from the broker; its answers are queued in the outbox
    /// (which outlives the connection) before its PUBACK is owed, so a lost
    /// connection redelivers rather than loses.
    fn on_publish(&mut self, publish: &Publish) {
        let reading = self.shared.clocks.read();
        let mut agent = self.shared.agent.borrow_mut();
        let now = agent.now(reading);
        match topics::parse(&publish.topic) {
            Some((s, Leaf::TimeAnswer)) if s == self.serial => {
                if agent.on_time_answer(&publish.payload, reading) {
                    // The online status of this connection was written
                    // before signed time, maybe by a clock far off: once
                    // more with the time a cloud can rely on (SPEC §2.4).
                    self.link.refresh_status(self.millis());
                }
            }
            Some((s, Leaf::DomainResult)) if s == self.serial => {
                agent.on_domain_result(&publish.payload, now, self.random())
            }
            _ => warn!(topic = %publish.topic, "message on an unexpected topic ignored"),
        }
    }

    /// Publishes a time request when one is due (at connect, then on the
    /// core's schedule), outside the outbox and at QoS 0: it is worth
    /// nothing once its answer could no longer be accepted.
    pub(super) fn ask_time_if_due(&mut self) {
        if self.link.publish_room() == 0 {
            return;
        }
        let mut nonce = [0u8; hc_protocol::time::NONCE_LEN];
        if self.rng.fill(&mut nonce).is_err() {
            error!("no random nonce for a time request");
            return;
        }
        let reading = self.shared.clocks.read();
        let request = self
            .shared
            .agent
            .borrow_mut()
            .time_request_if_due(reading, nonce);
        if let Some(payload) = request {
            let topic = topics::topic(&self.serial, Leaf::TimeRequest);
            match self
                .client
                .try_publish(topic, QoS::AtMostOnce, false, payload)
            {
                Ok(()) => {
                    self.link.handed(1);
                    debug!("time request sent");
                }
                Err(e) => warn!(error = %e, "time request could not be queued"),
            }
        }
    }

    /// Hands queued messages, then owed acknowledgements, to the MQTT
    /// client as far as the link allows; the rest waits for the next round.
    pub(super) fn hand_over(&mut self) {
        let mut agent = self.shared.agent.borrow_mut();
        let room = self.link.publish_room();
        let mut handed = 0;
        while let Some(message) = agent.outbox().peek().filter(|_| handed < room) {
            let topic = topics::topic(&self.serial, message.leaf);
            let retained = message.leaf.is_retained();
            let payload = message.payload.clone();
            if self
                .client
                .try_publish(topic, QoS::AtLeastOnce, retained, payload)
                .is_err()
            {
                break;
            }
            agent.outbox().sent();
            handed += 1;
        }
        self.link.handed(handed);
        while let Some(pkid) = self.link.next_puback() {
            let mut ack = Publish::new("", QoS::AtLeastOnce, Vec::new());
            ack.pkid = pkid;
            if self.client.try_ack(&ack).is_err() {
                break;
            }
            self.link.puback_handed();
        }
    }
}
