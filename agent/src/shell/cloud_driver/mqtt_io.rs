//! The driver's MQTT side: what the link asks for carried out on the MQTT
//! client, and what the MQTT connection reports fed to the link and the
//! agent; messages and acknowledgements handed over as far as the link
//! allows.

use hc_protocol::topics::{self, Leaf};
use rumqttc::{Event, Outgoing, Packet, Publish, QoS};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::Driver;
use crate::core::link::{LinkEvent, LossCause, Transmit};
use crate::shell::clock::now_secs;
use crate::shell::device::Agent;
use crate::shell::mqtt_task::MqttEvent;
use crate::store::RealFlash;

impl Driver<'_> {
    /// Carries out what the link asks for and reports what happened.
    pub(super) fn carry_out_link(&mut self) {
        while let Some(transmit) = self.link.poll_transmit() {
            match transmit {
                Transmit::Connect { attempt } => {
                    debug!(attempt, "connecting to the cloud");
                    self.mqtt.connect(attempt);
                }
                Transmit::Abort { attempt } => {
                    debug!(attempt, "connection dropped");
                    self.mqtt.abort();
                }
                Transmit::Subscribe => self.subscribe(),
                Transmit::Status { online } => {
                    let _ = self.client.try_publish(
                        topics::topic(&self.serial, Leaf::Status),
                        QoS::AtLeastOnce,
                        true,
                        Agent::<RealFlash>::status_payload(online),
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
        let error = self.connection_error.take();
        let error = error.as_ref().map(|e| e as &dyn std::error::Error);
        let mut agent = self.shared.agent.borrow_mut();
        match event {
            LinkEvent::Connected { session_present } => {
                info!(session_present, "connected to the cloud");
                agent.queue_state_report();
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
                }
                agent.registrar().on_disconnected();
            }
            LinkEvent::Closed => {
                info!("cloud link closed");
                agent.registrar().on_disconnected();
            }
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

    pub(super) fn on_mqtt(&mut self, event: MqttEvent) {
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
                    Packet::Publish(publish) => {
                        self.on_publish(&publish);
                        if publish.qos != QoS::AtMostOnce {
                            let random = self.random();
                            self.link
                                .handle_delivery(attempt, publish.pkid, now, random);
                        }
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
                self.connection_error = Some(e);
                let random = self.random();
                self.link.handle_error(attempt, now, random);
            }
        }
    }

    /// A message from the broker; its answers are queued in the outbox
    /// (which outlives the connection) before its PUBACK is owed, so a lost
    /// connection redelivers rather than loses.
    fn on_publish(&self, publish: &Publish) {
        let now = now_secs();
        let mut agent = self.shared.agent.borrow_mut();
        match topics::parse(&publish.topic) {
            Some((s, Leaf::Command)) if s == self.serial => agent.on_command(&publish.payload, now),
            Some((s, Leaf::DomainResult)) if s == self.serial => {
                agent.on_domain_result(&publish.payload, now, self.random())
            }
            _ => warn!(topic = %publish.topic, "message on an unexpected topic ignored"),
        }
        drop(agent);
        // A command may have revoked what a running stream relies on.
        self.shared.revoke_denied(now);
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
