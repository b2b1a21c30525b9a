//! A cloud for the fault tests that keeps a record of everything: every
//! ack (with the time it arrived) and every status, on an MQTT session
//! that can be persistent (so acks published while the cloud's own
//! connection is down, during a broker restart, are queued for it), and
//! that re-publishes a command envelope until it is acknowledged, as
//! protocol/SPEC.md section 6.5 allows ("MAY re-publish the same envelope").

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::envelope::CommandSigner;
use protocol::messages::DeviceStatus;
use protocol::topics::{self, Leaf};
use protocol::{Ack, Command, CommandBody, Serial};
use rumqttc::{Client, Event, MqttOptions, Packet, Publish, QoS, TlsConfiguration, Transport};
use sim_device::pki::Pki;

use super::{account, decode, signer, tls_client_config, SERIAL, WAIT};

/// One ack as the cloud received it.
#[derive(Debug, Clone, Copy)]
pub struct AckRecord {
    pub at: Instant,
    pub ack: Ack,
}

pub struct RecordingCloud {
    client: Client,
    rx: mpsc::Receiver<Publish>,
    signer: CommandSigner,
    pub seq: u64,
    /// Every ack received, in arrival order.
    pub acks: Vec<AckRecord>,
    /// Every status received (online or not), in arrival order.
    pub statuses: Vec<(Instant, bool)>,
    /// How often a command was published again because no ack came.
    pub resends: u64,
    /// How often the cloud's own connection (re)connected.
    pub connects: Arc<std::sync::atomic::AtomicU32>,
}

impl RecordingCloud {
    /// Connects to the broker on `port` with the PKI's cloud certificate.
    /// `persistent`: clean session off, so the broker queues for it.
    pub fn connect(pki: &Pki, port: u16, persistent: bool) -> RecordingCloud {
        static CLIENTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = CLIENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cloud = pki.cloud();
        let mut options = MqttOptions::new(
            format!("rec-cloud-{}-{id}", std::process::id()),
            "localhost",
            port,
        );
        options.set_keep_alive(Duration::from_secs(5));
        options.set_clean_session(!persistent);
        options.set_max_packet_size(512 * 1024, 512 * 1024);
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls_client_config(pki, &cloud.cert, &cloud.key)),
        )));
        let (client, mut connection) = Client::new(options, 1024);
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let subscriber = client.clone();
        let connects: Arc<std::sync::atomic::AtomicU32> = Arc::default();
        let counter = connects.clone();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        for leaf in [Leaf::Ack, Leaf::Status, Leaf::State] {
                            let _ = subscriber
                                .try_subscribe(topics::all_devices(leaf), QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send(p).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        for _ in 0..3 {
            ready_rx
                .recv_timeout(WAIT)
                .expect("recording cloud subscribed");
        }
        RecordingCloud {
            client,
            rx,
            signer: signer(),
            seq: 0,
            acks: Vec::new(),
            statuses: Vec::new(),
            resends: 0,
            connects,
        }
    }

    /// The next command (next seq, issued now) and its envelope.
    pub fn next(&mut self, actor: &str, body: CommandBody) -> (Command, Vec<u8>) {
        self.seq += 1;
        let command = Command {
            serial: Serial::new(SERIAL).unwrap(),
            actor: account(actor),
            seq: self.seq,
            issued_at: agent::shell::event_loop::now_secs(),
            body,
        };
        let envelope = self.signer.seal(&command).unwrap();
        (command, envelope)
    }

    pub fn publish(&self, envelope: &[u8]) {
        let topic = topics::topic(&Serial::new(SERIAL).unwrap(), Leaf::Command);
        self.client
            .publish(topic, QoS::AtLeastOnce, false, envelope.to_vec())
            .unwrap();
    }

    /// Records one incoming message, or returns false after `within`.
    fn receive(&mut self, within: Duration) -> bool {
        let Ok(p) = self.rx.recv_timeout(within) else {
            return false;
        };
        let serial = Serial::new(SERIAL).unwrap();
        let now = Instant::now();
        if p.topic == topics::topic(&serial, Leaf::Ack) {
            if let Some(ack) = decode::<Ack>(&p.payload) {
                self.acks.push(AckRecord { at: now, ack });
            }
        } else if p.topic == topics::topic(&serial, Leaf::Status) {
            if let Some(status) = decode::<DeviceStatus>(&p.payload) {
                self.statuses.push((now, status.online));
            }
        }
        true
    }

    /// Records what has arrived already, without waiting.
    pub fn drain(&mut self) {
        while self.receive(Duration::ZERO) {}
    }

    /// Records everything that arrives for `during`.
    pub fn record(&mut self, during: Duration) {
        let deadline = Instant::now() + during;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.receive(left);
        }
    }

    /// Records until an ack after index `from` of `self.acks` satisfies
    /// `accept`; returns it, or None after `within`.
    pub fn wait_ack_from(
        &mut self,
        from: usize,
        within: Duration,
        mut accept: impl FnMut(&Ack) -> bool,
    ) -> Option<Ack> {
        let deadline = Instant::now() + within;
        let mut checked = from;
        loop {
            while checked < self.acks.len() {
                let ack = self.acks[checked].ack;
                checked += 1;
                if accept(&ack) {
                    return Some(ack);
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.receive(left);
        }
    }

    /// Publishes `envelope` and re-publishes it every `resend_after` until
    /// an ack for `seq` arrives (any ack already recorded counts too);
    /// panics after `give_up`.
    pub fn send_until_acked(
        &mut self,
        seq: u64,
        envelope: &[u8],
        resend_after: Duration,
        give_up: Duration,
    ) -> Ack {
        let start = Instant::now();
        let from = self.acks.len();
        self.publish(envelope);
        loop {
            if let Some(ack) = self.wait_ack_from(from, resend_after, |a| a.seq == Some(seq)) {
                return ack;
            }
            assert!(
                start.elapsed() < give_up,
                "no ack for seq {seq} within {give_up:?} ({} resends so far)",
                self.resends
            );
            self.resends += 1;
            self.publish(envelope);
        }
    }

    /// Waits for a status `online` newer than index `from`.
    pub fn wait_status_from(&mut self, from: usize, online: bool, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.statuses[from.min(self.statuses.len())..]
                .iter()
                .any(|(_, o)| *o == online)
            {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            self.receive(left);
        }
    }

    /// Every ack recorded for `seq`.
    pub fn acks_for(&self, seq: u64) -> impl Iterator<Item = &Ack> {
        self.acks
            .iter()
            .map(|r| &r.ack)
            .filter(move |a| a.seq == Some(seq))
    }
}

impl super::TestCloud {
    /// The next `n` acks in arrival order (fewer after `within`); other
    /// messages are dropped.
    pub fn collect_acks(&self, n: usize, within: Duration) -> Vec<Ack> {
        let topic = topics::topic(&Serial::new(SERIAL).unwrap(), Leaf::Ack);
        let deadline = Instant::now() + within;
        let mut acks = Vec::with_capacity(n);
        while acks.len() < n {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            match self.rx.recv_timeout(left) {
                Ok(p) if p.topic == topic => {
                    if let Some(ack) = decode::<Ack>(&p.payload) {
                        acks.push(ack);
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        acks
    }
}
