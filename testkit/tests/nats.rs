//! The three-node NATS cluster with the project's PKI: each device
//! certificate reaches only its own topics, a QoS 1 command crosses
//! nodes, and a persistent session's queued command survives the SIGKILL
//! of the node its device was on. Skipped without nats-server (a failure
//! when `CI` is set).

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hc_testkit::cloud::{backend_client_id, tls_client_config};
use hc_testkit::nats::{skip_without_nats, NatsCluster};
use hc_testkit::pki::{CertFiles, Pki};
use hc_testkit::ports::BrokerAddr;
use rumqttc::{
    Client, ConnAck, Event, MqttOptions, Packet, Publish, QoS, SubscribeReasonCode,
    TlsConfiguration, Transport,
};

const WAIT: Duration = Duration::from_secs(10);

/// An MQTT 3.1.1 client whose incoming packets arrive on a channel.
struct Mqtt {
    client: Client,
    rx: mpsc::Receiver<Packet>,
}

impl Mqtt {
    /// Connects as `id` with `files` to `addr`; returns with the CONNACK.
    fn connect(
        pki: &Pki,
        files: &CertFiles,
        id: &str,
        addr: BrokerAddr,
        clean: bool,
    ) -> (Mqtt, ConnAck) {
        Mqtt::try_connect(pki, files, id, addr, clean)
            .unwrap_or_else(|e| panic!("{id}: no CONNACK from {addr:?}: {e}"))
    }

    /// The same; an error when the connection ends before its CONNACK.
    fn try_connect(
        pki: &Pki,
        files: &CertFiles,
        id: &str,
        addr: BrokerAddr,
        clean: bool,
    ) -> Result<(Mqtt, ConnAck), String> {
        let mut options = MqttOptions::new(id, addr.host(), addr.port());
        options.set_keep_alive(Duration::from_secs(5));
        options.set_clean_session(clean);
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls_client_config(pki, &files.cert, &files.key)),
        )));
        let (client, mut connection) = Client::new(options, 16);
        // As the agent's (`cloud.connect_timeout_secs`).
        connection
            .eventloop
            .network_options
            .set_connection_timeout(10);
        let (tx, rx) = mpsc::channel();
        let (ended_tx, ended) = mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(packet)) => {
                        if tx.send(packet).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // No reconnects: a test connects again explicitly.
                    Err(e) => {
                        let _ = ended_tx.send(e.to_string());
                        return;
                    }
                }
            }
        });
        let mqtt = Mqtt { client, rx };
        match mqtt.next(|p| matches!(p, Packet::ConnAck(_))) {
            Some(Packet::ConnAck(ack)) => Ok((mqtt, ack)),
            _ => Err(ended.try_recv().unwrap_or_else(|_| "no answer".into())),
        }
    }

    /// Connects (a persistent session) again and again until a CONNACK
    /// comes, or `deadline`: a node's SIGKILL leaves the JetStream
    /// streams it led without a leader for a few seconds, and connects
    /// that need them fail meanwhile.
    fn connect_retrying(
        pki: &Pki,
        files: &CertFiles,
        id: &str,
        addr: BrokerAddr,
        deadline: Instant,
    ) -> (Mqtt, ConnAck) {
        loop {
            match Mqtt::try_connect(pki, files, id, addr, false) {
                Ok(connected) => return connected,
                Err(e) if Instant::now() < deadline => eprintln!("{id}: {e}; again"),
                Err(e) => panic!("{id}: no CONNACK from {addr:?}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Publishes with QoS 1 until a PUBACK, connecting again (the same
    /// persistent session) when the node closes the connection: it does
    /// when JetStream does not store the message within 5 s.
    fn publish_retrying(
        mut self,
        reconnect: impl Fn() -> Mqtt,
        topic: &str,
        payload: &str,
        deadline: Instant,
    ) -> Mqtt {
        loop {
            self.client
                .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
                .unwrap();
            if self.next(|p| matches!(p, Packet::PubAck(_))).is_some() {
                return self;
            }
            assert!(Instant::now() < deadline, "no PUBACK for {topic}");
            eprintln!("no PUBACK for {topic}; again");
            self = reconnect();
        }
    }

    /// The next incoming packet that `wanted` accepts, within [`WAIT`].
    fn next(&self, wanted: impl Fn(&Packet) -> bool) -> Option<Packet> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(packet) if wanted(&packet) => return Some(packet),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Subscribes to one topic with QoS 1; its SUBACK return code.
    fn subscribe_one(&self, topic: &str) -> SubscribeReasonCode {
        self.client.subscribe(topic, QoS::AtLeastOnce).unwrap();
        match self.next(|p| matches!(p, Packet::SubAck(_))) {
            Some(Packet::SubAck(ack)) => ack.return_codes[0],
            other => panic!("no SUBACK for {topic}: {other:?}"),
        }
    }

    /// Publishes with QoS 1 and waits for the PUBACK.
    fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .unwrap();
        assert!(
            self.next(|p| matches!(p, Packet::PubAck(_))).is_some(),
            "no PUBACK for {topic}"
        );
    }

    /// The next message on `topic` with `payload`, within [`WAIT`].
    fn receive(&self, topic: &str, payload: &str) -> Option<Publish> {
        match self.next(|p| matches!(p, Packet::Publish(m) if m.topic == topic && m.payload == payload.as_bytes()))
        {
            Some(Packet::Publish(p)) => Some(p),
            _ => None,
        }
    }

    /// Every message that arrives within `quiet`.
    fn drain(&self, quiet: Duration) -> Vec<Publish> {
        let mut got = Vec::new();
        while let Ok(packet) = self.rx.recv_timeout(quiet) {
            if let Packet::Publish(p) = packet {
                got.push(p);
            }
        }
        got
    }

    fn disconnect(self) {
        let _ = self.client.disconnect();
        // The connection thread ends once the DISCONNECT is out.
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cluster(serials: &[&str]) -> (tempfile::TempDir, Pki, NatsCluster) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path().join("pki"), serials).unwrap();
    let started = Instant::now();
    let cluster = NatsCluster::start(&pki).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("cluster ready in {:?}", started.elapsed());
    (dir, pki, cluster)
}

fn cloud(pki: &Pki, cluster: &NatsCluster, node: usize, n: u32) -> Mqtt {
    let (mqtt, _) = Mqtt::connect(
        pki,
        pki.cloud(),
        &backend_client_id("test-cloud", n),
        cluster.endpoint(node).unwrap(),
        false,
    );
    mqtt
}

#[test]
fn a_device_certificate_reaches_only_its_own_topics() {
    if skip_without_nats("a_device_certificate_reaches_only_its_own_topics") {
        return;
    }
    let (_dir, mut pki, mut cluster) = cluster(&["NVR-1", "NVR-2"]);
    let cloud = cloud(&pki, &cluster, 0, 1);
    assert_eq!(
        cloud.subscribe_one("dev/+/ack"),
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    let nvr1 = pki.device("NVR-1").unwrap().clone();
    let (device, _) = Mqtt::connect(&pki, &nvr1, "NVR-1", cluster.endpoint(1).unwrap(), true);
    assert_eq!(
        device.subscribe_one("dev/NVR-1/cmd"),
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    // Another device's commands, every device's, the cloud's inbound.
    for foreign in ["dev/NVR-2/cmd", "dev/+/cmd", "dev/#", "dev/NVR-2/ack"] {
        assert_eq!(
            device.subscribe_one(foreign),
            SubscribeReasonCode::Failure,
            "{foreign}"
        );
    }
    // Publishing as another device is acknowledged (MQTT 3.1.1 cannot
    // refuse) but never delivered; its own acks are.
    device.publish("dev/NVR-2/ack", "forged");
    device.publish("dev/NVR-1/cmd", "to itself");
    device.publish("dev/NVR-1/ack", "mine");
    assert!(cloud.receive("dev/NVR-1/ack", "mine").is_some());
    cloud.publish("dev/NVR-2/cmd", "for NVR-2");
    cloud.publish("dev/NVR-1/cmd", "for NVR-1");
    let got = device.drain(Duration::from_millis(1500));
    let payloads: Vec<_> = got
        .iter()
        .map(|p| (p.topic.as_str(), String::from_utf8_lossy(&p.payload)))
        .collect();
    assert_eq!(payloads, [("dev/NVR-1/cmd", "for NVR-1".into())]);
    assert!(cloud.drain(Duration::from_millis(500)).is_empty());
    assert!(cluster.log(1).contains("Publish Violation"));

    // A device added later connects once the users are reloaded.
    let nvr3 = pki.add_device("NVR-3").unwrap();
    cluster.reload_users(&pki).unwrap();
    let deadline = Instant::now() + WAIT;
    // The nodes reload on SIGHUP in their own time: until then NVR-3 is
    // refused (CONNACK 5, which the client reports as an error).
    let device3 = loop {
        match Mqtt::try_connect(&pki, &nvr3, "NVR-3", cluster.endpoint(2).unwrap(), true) {
            Ok((device3, ack)) if ack.code == rumqttc::ConnectReturnCode::Success => break device3,
            refused => {
                let why = refused.map(|(_, ack)| format!("{ack:?}"));
                assert!(Instant::now() < deadline, "NVR-3 refused: {why:?}");
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    device3.publish("dev/NVR-3/ack", "new");
    assert!(cloud.receive("dev/NVR-3/ack", "new").is_some());
    device3.disconnect();
    device.disconnect();
    cloud.disconnect();
}

#[test]
fn a_qos1_command_reaches_a_device_on_another_node() {
    if skip_without_nats("a_qos1_command_reaches_a_device_on_another_node") {
        return;
    }
    let (_dir, pki, mut cluster) = cluster(&["NVR-1"]);
    let nvr1 = pki.device("NVR-1").unwrap().clone();
    let (device, _) = Mqtt::connect(&pki, &nvr1, "NVR-1", cluster.endpoint(2).unwrap(), false);
    assert_eq!(
        device.subscribe_one("dev/NVR-1/cmd"),
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    assert_eq!(cluster.node_serving("NVR-1"), Some(2));
    assert_eq!(cluster.clients_on(2).unwrap(), ["NVR-1"]);
    let cloud = cloud(&pki, &cluster, 0, 2);
    let started = Instant::now();
    cloud.publish("dev/NVR-1/cmd", "bind");
    let command = device
        .receive("dev/NVR-1/cmd", "bind")
        .expect("the command crossed nodes");
    assert_eq!(command.qos, QoS::AtLeastOnce);
    eprintln!("command delivered across nodes in {:?}", started.elapsed());
    device.disconnect();
    assert_eq!(cluster.node_serving("NVR-1"), None);
    cloud.disconnect();
}

#[test]
fn a_queued_command_survives_the_sigkill_of_the_devices_node() {
    if skip_without_nats("a_queued_command_survives_the_sigkill_of_the_devices_node") {
        return;
    }
    let (_dir, pki, mut cluster) = cluster(&["NVR-1"]);
    let nvr1 = pki.device("NVR-1").unwrap().clone();
    let (device, ack) = Mqtt::connect(&pki, &nvr1, "NVR-1", cluster.endpoint(0).unwrap(), false);
    assert!(!ack.session_present);
    assert_eq!(
        device.subscribe_one("dev/NVR-1/cmd"),
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    device.disconnect();
    let cloud_id = backend_client_id("test-cloud", 3);
    let cloud_at = cluster.endpoint(1).unwrap();
    let (cloud, _) = Mqtt::connect(&pki, pki.cloud(), &cloud_id, cloud_at, false);
    // One command queued while the device is away, one after its node died.
    cloud.publish("dev/NVR-1/cmd", "before the kill");
    cluster.kill(0).unwrap();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(20);
    let cloud = cloud.publish_retrying(
        || Mqtt::connect_retrying(&pki, pki.cloud(), &cloud_id, cloud_at, deadline).0,
        "dev/NVR-1/cmd",
        "after the kill",
        deadline,
    );
    eprintln!("PUBACK {:?} after the kill", killed.elapsed());
    let (device, ack) =
        Mqtt::connect_retrying(&pki, &nvr1, "NVR-1", cluster.endpoint(2).unwrap(), deadline);
    eprintln!("CONNACK {:?} after the kill", killed.elapsed());
    assert!(ack.session_present, "the session lives on node 2: {ack:?}");
    assert_eq!(cluster.node_serving("NVR-1"), Some(2));
    assert!(device.receive("dev/NVR-1/cmd", "before the kill").is_some());
    assert!(device.receive("dev/NVR-1/cmd", "after the kill").is_some());
    eprintln!(
        "both commands delivered {:?} after the kill",
        killed.elapsed()
    );
    // The killed node comes back into the cluster.
    let started = Instant::now();
    cluster.restart(0).unwrap();
    eprintln!("node 0 back in {:?}", started.elapsed());
    cloud.publish("dev/NVR-1/cmd", "after the restart");
    assert!(device
        .receive("dev/NVR-1/cmd", "after the restart")
        .is_some());
    device.disconnect();
    cloud.disconnect();
}
