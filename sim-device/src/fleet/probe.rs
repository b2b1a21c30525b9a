//! The cloud's side of the latency measurement: signed shares sent to the
//! fleet's devices, and their acknowledgements timed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hc_agent::shell::tls::{client_config, TlsFiles};
use hc_protocol::access::Action;
use hc_protocol::codec;
use hc_protocol::envelope::CommandSigner;
use hc_protocol::limits::MAX_MESSAGE_BYTES;
use hc_protocol::topics::{self, Leaf};
use hc_protocol::{Ack, ChannelScope, Command, CommandBody, Outcome, Permissions, Serial};
use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS};

use super::device::{account, mqtt_options, SHARES_PER_DEVICE};
use super::{now_secs, setup, FleetError, Target};
use crate::pki::Pki;

/// The cloud's side of the latency measurement: sends signed shares to
/// devices and times their acknowledgements.
pub(super) struct LatencyProbe {
    client: AsyncClient,
    eventloop: EventLoop,
    signer: CommandSigner,
}

impl LatencyProbe {
    pub(super) async fn connect(
        pki: &Pki,
        target: &Target,
        signer: CommandSigner,
    ) -> Result<Self, FleetError> {
        let files = pki.cloud();
        let tls = client_config(&TlsFiles {
            ca: pki.ca_cert(),
            cert: &files.cert,
            key: &files.key,
            allow_tls12: false,
        })
        .map_err(setup("cloud TLS"))?;
        let mut options = mqtt_options(
            "cloud-fleet-probe",
            (&target.host, target.port),
            std::sync::Arc::new(tls),
            Duration::from_secs(30),
        );
        options.set_clean_session(true);
        options.set_inflight(100);
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) => return Err(FleetError::Setup(format!("cloud connect: {e}"))),
            }
        }
        client
            .subscribe(topics::all_devices(Leaf::Ack), QoS::AtLeastOnce)
            .await
            .map_err(setup("cloud subscribe"))?;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => break,
                Ok(_) => {}
                Err(e) => return Err(FleetError::Setup(format!("cloud subscribe: {e}"))),
            }
        }
        Ok(LatencyProbe {
            client,
            eventloop,
            signer,
        })
    }

    /// Sends `count` commands, one at a time in flight per device and up to
    /// `window` in flight overall, round-robin over `serials`, device `i`'s
    /// first with sequence number `next_seq[i]` (advanced past every
    /// command sent); returns the latencies, the refused count and the
    /// unanswered count.
    pub(super) async fn run(
        mut self,
        serials: &[Serial],
        count: usize,
        window: usize,
        next_seq: &mut Vec<u64>,
    ) -> Result<(Vec<Duration>, usize, usize), FleetError> {
        let mut tally = Tally::new(std::mem::take(next_seq), count);
        let deadline =
            Instant::now() + Duration::from_secs(60) + Duration::from_millis(count as u64 * 5);
        while tally.latencies.len() + tally.refused < count && Instant::now() < deadline {
            while tally.sent < count && tally.in_flight.len() < window {
                self.send_next(serials, &mut tally).await?;
            }
            let event = tokio::time::timeout(Duration::from_secs(5), self.eventloop.poll()).await;
            match event {
                Ok(Ok(Event::Incoming(Packet::Publish(publish)))) => {
                    tally.on_ack(&publish.topic, &publish.payload)
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(FleetError::Setup(format!("cloud link: {e}"))),
                Err(_) => break,
            }
        }
        let unanswered = count - tally.latencies.len() - tally.refused;
        *next_seq = tally.next_seq;
        Ok((tally.latencies, tally.refused, unanswered))
    }

    /// Sends one command to the next device round the ring that has none
    /// in flight (`window <= devices`, so a free device comes round).
    async fn send_next(&self, serials: &[Serial], tally: &mut Tally) -> Result<(), FleetError> {
        let device = loop {
            let device = tally.cursor % serials.len();
            tally.cursor += 1;
            if !tally.busy[device] {
                break device;
            }
        };
        let seq = tally.next_seq[device];
        tally.next_seq[device] += 1;
        // Every command changes the state: the share flips between
        // two permission sets.
        let permissions = if seq.is_multiple_of(2) {
            Permissions::of(&[Action::LiveView])
        } else {
            Permissions::of(&[Action::LiveView, Action::Playback])
        };
        let body = CommandBody::Share {
            account: account("probe")?,
            permissions,
            channels: ChannelScope::All,
            validity: None,
        };
        let command = Command {
            serial: serials[device].clone(),
            actor: account("owner")?,
            seq,
            issued_at: now_secs(),
            body,
        };
        let sealed = self.signer.seal(&command).map_err(setup("seal"))?;
        tally.busy[device] = true;
        tally.in_flight.insert(
            (serials[device].as_str().to_owned(), seq),
            (device, Instant::now()),
        );
        self.client
            .publish(
                topics::topic(&serials[device], Leaf::Command),
                QoS::AtLeastOnce,
                false,
                sealed,
            )
            .await
            .map_err(setup("publish"))?;
        tally.sent += 1;
        Ok(())
    }
}

/// Each device's first command sequence number: its ledger ends at
/// 1 + SHARES_PER_DEVICE (the bind and the shares it starts with).
pub(super) fn first_seqs(devices: usize) -> Vec<u64> {
    vec![2 + SHARES_PER_DEVICE as u64; devices]
}

/// The probe's bookkeeping while commands are out.
struct Tally {
    next_seq: Vec<u64>,
    busy: Vec<bool>,
    /// By serial and sequence number: the device's index and when sent.
    in_flight: HashMap<(String, u64), (usize, Instant)>,
    latencies: Vec<Duration>,
    refused: usize,
    sent: usize,
    cursor: usize,
}

impl Tally {
    fn new(next_seq: Vec<u64>, count: usize) -> Tally {
        let devices = next_seq.len();
        Tally {
            next_seq,
            busy: vec![false; devices],
            in_flight: HashMap::new(),
            latencies: Vec::with_capacity(count),
            refused: 0,
            sent: 0,
            cursor: 0,
        }
    }

    /// An acknowledgement arrived: times the command it answers.
    fn on_ack(&mut self, topic: &str, payload: &[u8]) {
        let Some((serial, Leaf::Ack)) = topics::parse(topic) else {
            return;
        };
        let Ok(ack) = codec::decode::<Ack>(payload, MAX_MESSAGE_BYTES) else {
            return;
        };
        let Some(seq) = ack.seq else { return };
        if let Some((device, at)) = self.in_flight.remove(&(serial.as_str().to_owned(), seq)) {
            self.busy[device] = false;
            match ack.outcome {
                Outcome::Accepted => self.latencies.push(at.elapsed()),
                Outcome::Refused(_) => self.refused += 1,
            }
        }
    }
}
