//! One fleet device: its TLS session and MQTT link, its access list built
//! through the agent's core, the agent's backoff between attempts and its
//! rotation over the broker endpoints (a cluster's nodes: it starts at
//! the node its serial picks, fails over to the next when an attempt
//! fails), and the signed commands it applies and acknowledges.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hc_agent::core::backoff::{Backoff, BackoffPolicy};
use hc_agent::core::link::resubscribe_delay;
use hc_agent::core::link::Endpoints;
use hc_agent::core::{apply, handle_command, DeviceState, Identity};
use hc_agent::shell::config::first_endpoint;
use hc_agent::shell::mqtt_error::MqttError;
use hc_agent::shell::tls::{client_config, TlsFiles};
use hc_protocol::access::Action;
use hc_protocol::codec;
use hc_protocol::command::bind_proof;
use hc_protocol::envelope::CommandKeys;
use hc_protocol::limits::{MAX_COMMAND_BYTES, MAX_MESSAGE_BYTES};
use hc_protocol::topics::{self, Leaf};
use hc_protocol::{
    AccountId, AccountRef, BindRole, ChannelScope, Command, CommandBody, Outcome, Permissions,
    Region, Serial, Text,
};
use ring::rand::{SecureRandom, SystemRandom};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use super::{now_secs, setup, FleetError};
use crate::pki::Pki;

/// Shares each fleet device holds besides its owner.
pub(super) const SHARES_PER_DEVICE: usize = 4;
const REGION: &str = "EU";
const CODE: &str = "ABCDEF";
const CHANNELS: u16 = 8;
/// The agent's own connection timeout (`cloud.connect_timeout_secs`).
const AGENT_CONNECT_TIMEOUT_SECS: u64 = 10;

/// What devices tell the coordinator.
#[derive(Debug)]
pub(super) enum DeviceEvent {
    /// `took`: from the start of this device's attempt to its ConnAck.
    Connected {
        device: usize,
        at: Instant,
        took: Duration,
    },
    /// Device `device`'s subscription to its commands was acknowledged.
    Subscribed { device: usize },
    /// Device `device` lost its established connection.
    Disconnected { device: usize },
    /// An attempt to connect failed, how, and `took` from its start.
    Failed { kind: &'static str, took: Duration },
}

/// A short name for why a connection attempt failed, for the report.
fn failure_kind(error: &rumqttc::ConnectionError) -> &'static str {
    use rumqttc::ConnectionError as E;
    match error {
        E::Io(e) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused",
            std::io::ErrorKind::ConnectionReset => "connection reset",
            std::io::ErrorKind::TimedOut => "timed out",
            std::io::ErrorKind::UnexpectedEof => "closed by the broker",
            _ => "other I/O error",
        },
        E::NetworkTimeout | E::FlushTimeout => "timed out",
        E::Tls(_) => "TLS error",
        E::ConnectionRefused(_) => "refused by the broker (CONNACK)",
        E::MqttState(_) => "connection lost",
        _ => "other",
    }
}

pub(super) fn account(id: &str) -> Result<AccountRef, FleetError> {
    Ok(AccountRef {
        id: AccountId::new(id).map_err(setup("account"))?,
        region: Region::new(REGION).map_err(setup("region"))?,
    })
}

/// A device bound to its owner with a few shares, built through the core
/// (as the cloud would have), with sequence numbers 1..=1+SHARES.
fn initial_state(serial: &Serial, now: u64) -> Result<DeviceState, FleetError> {
    let identity = Identity {
        serial: serial.clone(),
        region: Region::new(REGION).map_err(setup("region"))?,
        channel_count: CHANNELS,
        verification_code: Text::new(CODE).map_err(setup("code"))?,
    };
    let owner = account("owner")?;
    let mut state = DeviceState::new(identity).map_err(setup("state"))?;
    let mut bodies = vec![CommandBody::Bind {
        role: BindRole::Owner,
        proof: bind_proof(CODE.as_bytes(), serial, &owner.id),
    }];
    for i in 0..SHARES_PER_DEVICE {
        bodies.push(CommandBody::Share {
            account: account(&format!("friend{i}"))?,
            permissions: Permissions::of(&[Action::LiveView, Action::Playback]),
            channels: ChannelScope::All,
            validity: None,
        });
    }
    for (i, body) in bodies.into_iter().enumerate() {
        let command = Command {
            serial: serial.clone(),
            actor: owner.clone(),
            seq: i as u64 + 1,
            issued_at: now,
            body,
        };
        let applied = apply(&state, &command, now);
        if applied.outcome != Outcome::Accepted {
            return Err(FleetError::Setup(format!(
                "initial command {} refused: {:?}",
                command.seq, applied.outcome
            )));
        }
        state = applied.state;
    }
    Ok(state)
}

fn random_u32(rng: &SystemRandom) -> u32 {
    let mut bytes = [0u8; 4];
    let _ = rng.fill(&mut bytes);
    u32::from_le_bytes(bytes)
}

pub(super) fn mqtt_options(
    client_id: &str,
    (host, port): (&str, u16),
    tls: Arc<rustls::ClientConfig>,
    keep_alive: Duration,
) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_keep_alive(keep_alive);
    options.set_clean_session(false);
    // Small windows: a device handles one command at a time.
    options.set_inflight(4);
    options.set_max_packet_size(MAX_COMMAND_BYTES + 512, MAX_MESSAGE_BYTES + 512);
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    options
}

fn device_tls(pki: &Pki, serial: &str) -> Result<rustls::ClientConfig, FleetError> {
    let files = pki
        .device(serial)
        .ok_or_else(|| FleetError::Setup(format!("no certificate for {serial}")))?;
    let mut config = client_config(&TlsFiles {
        ca: pki.ca_cert(),
        cert: &files.cert,
        key: &files.key,
        allow_tls12: false,
    })
    .map_err(setup("device TLS"))?;
    // A session cache per device is memory the fleet does not need: a
    // restarted broker has new ticket keys anyway.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// One simulated device: its link, its state, its backoff.
struct Device {
    index: usize,
    serial: Serial,
    state: DeviceState,
    keys: Arc<CommandKeys>,
    backoff: BackoffPolicy,
    client: AsyncClient,
    eventloop: EventLoop,
    /// Every broker endpoint (shared by the fleet) and where this device
    /// is in their rotation.
    endpoints: Arc<Vec<(String, u16)>>,
    rotation: Endpoints,
    tls: Arc<rustls::ClientConfig>,
}

impl Device {
    async fn run(
        mut self,
        events: mpsc::UnboundedSender<DeviceEvent>,
        first_connect: Arc<Semaphore>,
    ) {
        let rng = SystemRandom::new();
        let mut backoff = Backoff::new(self.backoff);
        let started = Instant::now();
        let millis = || started.elapsed().as_millis() as u64;
        let mut permit = first_connect.acquire_owned().await.ok();
        let mut attempt_started = Instant::now();
        let mut connected = false;
        // Subscriptions refused in a row on this connection.
        let mut refusals = 0;
        loop {
            match self.eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    permit = None;
                    connected = true;
                    refusals = 0;
                    self.rotation.on_connected();
                    backoff.on_connected(millis());
                    let _ = self.client.try_subscribe(
                        topics::topic(&self.serial, Leaf::Command),
                        QoS::AtLeastOnce,
                    );
                    let _ = events.send(DeviceEvent::Connected {
                        device: self.index,
                        at: Instant::now(),
                        took: attempt_started.elapsed(),
                    });
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    // A refused subscription (0x80) leaves the device deaf:
                    // as the agent, ask again later and later.
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        let delay = resubscribe_delay(refusals, random_u32(&rng));
                        refusals = refusals.saturating_add(1);
                        let client = self.client.clone();
                        let topic = topics::topic(&self.serial, Leaf::Command);
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = client.subscribe(topic, QoS::AtLeastOnce).await;
                        });
                    } else {
                        let _ = events.send(DeviceEvent::Subscribed { device: self.index });
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => self.on_command(&publish.payload),
                Ok(_) => {
                    // A reconnect leaves room for 100 replayed requests.
                    if self.eventloop.pending.is_empty() && self.eventloop.pending.capacity() > 0 {
                        self.eventloop.pending = std::collections::VecDeque::new();
                    }
                }
                Err(error) => {
                    if !connected {
                        let _ = events.send(DeviceEvent::Failed {
                            kind: failure_kind(&error),
                            took: attempt_started.elapsed(),
                        });
                    }
                    if permit.is_some() {
                        // Give the slot to another device while this one waits.
                        permit = None;
                    }
                    // As the agent: a lost link is tried again where it
                    // was after the backoff; a failed attempt fails over to
                    // the next endpoint while the round has one left.
                    let delay = if connected {
                        connected = false;
                        backoff.on_disconnected(millis(), MqttError::of(&error).loss_origin());
                        let _ = events.send(DeviceEvent::Disconnected { device: self.index });
                        backoff.on_connect_failed(random_u32(&rng))
                    } else {
                        let failover = self.rotation.on_connect_failed(random_u32(&rng));
                        self.use_endpoint();
                        failover.unwrap_or_else(|| backoff.on_connect_failed(random_u32(&rng)))
                    };
                    tokio::time::sleep(delay).await;
                    attempt_started = Instant::now();
                }
            }
        }
    }

    /// Points the event loop at the rotation's current endpoint (rumqttc
    /// has no setter for the address: the options are built again).
    fn use_endpoint(&mut self) {
        if self.endpoints.len() < 2 {
            return;
        }
        let Some((host, port)) = self.endpoints.get(usize::from(self.rotation.current())) else {
            return;
        };
        let keep_alive = self.eventloop.mqtt_options.keep_alive();
        self.eventloop.mqtt_options = mqtt_options(
            self.serial.as_str(),
            (host, *port),
            self.tls.clone(),
            keep_alive,
        );
    }

    fn on_command(&mut self, payload: &[u8]) {
        let now = now_secs();
        // The agent's own command path; the simulated device keeps its
        // state in memory (no flash), so every plan is carried out.
        let applied = handle_command(&self.state, payload, &self.keys, now);
        let ack = applied.ack();
        self.state = applied.state;
        if let Some(ack) = ack {
            if let Ok(bytes) = codec::encode(&ack, MAX_MESSAGE_BYTES) {
                let _ = self.client.try_publish(
                    topics::topic(&self.serial, Leaf::Ack),
                    QoS::AtLeastOnce,
                    false,
                    bytes,
                );
            }
        }
    }
}

/// What every device of a fleet is started with.
pub(super) struct Launch<'a> {
    pub(super) pki: &'a Pki,
    /// Every broker endpoint: the target's address, then its others.
    pub(super) endpoints: Arc<Vec<(String, u16)>>,
    pub(super) keys: Arc<CommandKeys>,
    /// Cloud time for the devices' initial commands.
    pub(super) now: u64,
    pub(super) backoff: BackoffPolicy,
    pub(super) events: mpsc::UnboundedSender<DeviceEvent>,
    /// Slots for handshakes in progress while the fleet first connects.
    pub(super) first_connect: Arc<Semaphore>,
}

impl Launch<'_> {
    /// Builds device `index` with serial `name` and spawns it.
    /// The device is switched on (starts connecting) after `switch_on`.
    pub(super) fn spawn(
        &self,
        index: usize,
        name: &str,
        switch_on: Duration,
    ) -> Result<(JoinHandle<()>, Serial), FleetError> {
        let serial = Serial::new(name).map_err(setup("serial"))?;
        let tls = Arc::new(device_tls(self.pki, name)?);
        let rotation = Endpoints::new(
            u8::try_from(self.endpoints.len()).unwrap_or(u8::MAX),
            first_endpoint(name, self.endpoints.len()),
        );
        let (host, port) = self
            .endpoints
            .get(usize::from(rotation.current()))
            .ok_or_else(|| FleetError::Setup("no broker endpoint".into()))?;
        let (client, mut eventloop) = AsyncClient::new(
            mqtt_options(name, (host, *port), tls.clone(), Duration::from_secs(60)),
            8,
        );
        // As the agent: a handshake queued behind a busy broker is not dead.
        eventloop
            .network_options
            .set_connection_timeout(AGENT_CONNECT_TIMEOUT_SECS);
        eventloop.network_options.set_tcp_nodelay(true);
        // rumqttc reserves room for 100 events per connection (14 KiB); a
        // device sees one at a time, and the queue grows if it must.
        eventloop.state.events = std::collections::VecDeque::new();
        let device = Device {
            index,
            state: initial_state(&serial, self.now)?,
            serial: serial.clone(),
            keys: self.keys.clone(),
            backoff: self.backoff,
            client,
            eventloop,
            endpoints: self.endpoints.clone(),
            rotation,
            tls,
        };
        let (events, first_connect) = (self.events.clone(), self.first_connect.clone());
        let handle = tokio::spawn(async move {
            tokio::time::sleep(switch_on).await;
            device.run(events, first_connect).await
        });
        Ok((handle, serial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_device_starts_bound_with_its_shares() {
        let serial = Serial::new("FLEET-00001").unwrap();
        let state = initial_state(&serial, 1_800_000_000).unwrap();
        assert_eq!(state.access.shares.len(), SHARES_PER_DEVICE);
        assert_eq!(state.ledger.last_seq, 1 + SHARES_PER_DEVICE as u64);
    }
}
