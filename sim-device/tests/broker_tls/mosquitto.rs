//! mosquitto with TLS, client certificates and the per-device ACL.

use super::*;

/// A PKI for `serials` and mosquitto started with it; `None` (the test
/// skips) without mosquitto.
/// The PKI and mosquitto for the calling test (named after its thread, as
/// the test harness names it), or `None` if mosquitto is missing.
fn with_mosquitto(serials: &[&str]) -> Option<(tempfile::TempDir, Pki, Mosquitto)> {
    let thread = std::thread::current();
    if skip_without_mosquitto(thread.name().unwrap_or("broker_tls")) {
        return None;
    }
    let (dir, pki) = pki(serials);
    let broker = Mosquitto::start(&pki).expect("start mosquitto");
    Some((dir, pki, broker))
}

#[tokio::test]
async fn mosquitto_device_receives_what_the_cloud_publishes() {
    let Some((_dir, pki, broker)) = with_mosquitto(&["S1"]) else {
        return;
    };
    device_receives_cloud_commands(broker.port(), &pki).await;
}

#[tokio::test]
async fn mosquitto_refuses_clients_without_a_valid_certificate() {
    let Some((_dir, pki, broker)) = with_mosquitto(&["S1"]) else {
        return;
    };
    let other = pki.generate_unrelated().unwrap();
    let error = refuses_no_certificate(broker.port(), &pki).await;
    eprintln!("no certificate: refused as expected: {error}");
    let error = refuses_another_ca(broker.port(), &pki, &other).await;
    eprintln!("other CA: refused as expected: {error}");
}

#[tokio::test]
async fn mosquitto_confines_device_reads_to_its_own_subtree() {
    let Some((_dir, pki, broker)) = with_mosquitto(&["S1", "S2"]) else {
        return;
    };
    let port = broker.port();
    let mut s1 = device(port, &pki, "S1").connect().await.unwrap();
    let s2 = Serial::new("S2").unwrap();
    let other = s1.subscribe(&topic(&s2, Leaf::Command)).await;
    eprintln!("S1 subscribing to dev/S2/cmd: {other:?}");
    // Every one of S2's leaves, and a wildcard over every device, must not
    // leak either.
    for leaf in Leaf::ALL {
        s1.subscribe(&topic(&s2, leaf)).await;
    }
    s1.subscribe("dev/#").await;
    s1.subscribe("dev/S1/cmd").await;

    let mut cloud = cloud(port, &pki).connect().await.unwrap();
    // The cloud writes every leaf of S2's tree (state and status retained,
    // as S2 itself would: the state report carries S2's access list).
    for leaf in Leaf::ALL {
        cloud
            .publish(&topic(&s2, leaf), leaf.is_retained(), b"for S2".to_vec())
            .await;
    }
    cloud.publish("dev/S1/cmd", false, b"for S1".to_vec()).await;
    // Messages from one publisher arrive in order: any of S2's would have
    // come first.
    let got = s1.next_publish().await;
    assert_eq!(
        (got.topic.as_str(), got.payload.as_ref()),
        ("dev/S1/cmd", &b"for S1"[..])
    );
    // Overlapping subscriptions may deliver S1's command once per filter;
    // never S2's.
    while let Ok(Some(packet)) =
        tokio::time::timeout(Duration::from_millis(300), s1.rx.recv()).await
    {
        if let Packet::Publish(p) = packet {
            assert_eq!(p.topic, "dev/S1/cmd");
        }
    }
}

#[tokio::test]
async fn mosquitto_confines_device_writes_to_its_own_subtree() {
    let Some((_dir, pki, broker)) = with_mosquitto(&["S1", "S2"]) else {
        return;
    };
    let port = broker.port();
    let s1_serial = Serial::new("S1").unwrap();
    let s2_serial = Serial::new("S2").unwrap();
    // Every leaf of S2's subtree, whichever way it normally flows, and the
    // one S1 ends with.
    let forged: Vec<String> = Leaf::ALL
        .into_iter()
        .map(|leaf| topic(&s2_serial, leaf))
        .collect();
    let own = topic(&s1_serial, Leaf::Ack);
    let mut cloud = cloud(port, &pki).connect().await.unwrap();
    for filter in forged.iter().chain([&own]) {
        assert_eq!(
            cloud.subscribe(filter).await,
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            "the cloud subscribes to {filter}"
        );
    }

    let mut s1 = device(port, &pki, "S1").connect().await.unwrap();
    // Refused publishes are still acknowledged in MQTT 3.1.1, then dropped.
    // Retained where the real messages are, so a forgery that got through
    // would also stay for later subscribers.
    for (leaf, forged_topic) in Leaf::ALL.into_iter().zip(&forged) {
        s1.publish(forged_topic, leaf.is_retained(), b"forged".to_vec())
            .await;
    }
    s1.publish(&own, false, b"mine".to_vec()).await;
    // In order from one publisher: a forged message would have come first.
    let got = cloud.next_publish().await;
    assert_eq!(
        (got.topic.as_str(), got.payload.as_ref()),
        (own.as_str(), &b"mine"[..]),
        "the first message the cloud got"
    );
    // And nothing after it either.
    while let Ok(Some(packet)) =
        tokio::time::timeout(Duration::from_millis(300), cloud.rx.recv()).await
    {
        if let Packet::Publish(p) = packet {
            panic!("the cloud received {} ({:?})", p.topic, p.payload);
        }
    }
    eprintln!(
        "S1 forged {} publishes, one per leaf of S2's subtree ({}): none reached the cloud",
        forged.len(),
        forged.join(", ")
    );
}

#[tokio::test]
async fn mosquitto_restart_keeps_the_port_and_persistent_sessions() {
    let Some((_dir, pki, mut broker)) = with_mosquitto(&["S1"]) else {
        return;
    };
    let port = broker.port();
    let mut s1 = persistent_s1(port, &pki).await;
    s1.subscribe("dev/S1/cmd").await;
    s1.client.disconnect().await.unwrap();
    s1.kill();

    // Queued for the offline device, then the broker restarts.
    let mut cloud = cloud(port, &pki).connect().await.unwrap();
    cloud.publish("dev/S1/cmd", false, b"queued".to_vec()).await;
    cloud_retains(port, &pki).await;
    broker.restart().unwrap();
    assert_eq!(broker.port(), port);

    back_on_session(port, &pki, b"queued").await;
    let mut cloud = self::cloud(port, &pki).connect().await.unwrap();
    assert_state_retained(&mut cloud).await;
}

#[tokio::test]
async fn mosquitto_tls12_only_refuses_a_tls13_only_client() {
    if skip_without_mosquitto("mosquitto_tls12_only_refuses_a_tls13_only_client") {
        return;
    }
    let (_dir, pki) = pki(&["S1"]);
    let broker = Mosquitto::start_with(
        &pki,
        MosquittoConfig {
            port: 0,
            tls: TlsVersions::Tls12Only,
        },
    )
    .unwrap();
    let mut strict = device(broker.port(), &pki, "S1");
    strict.tls = Some(client_tls(pki.ca_cert(), pki.device("S1"), true));
    let error = refused(strict, "ProtocolVersion").await;
    eprintln!("TLS 1.3-only client refused as expected: {error}");
    // A client that allows TLS 1.2 gets in.
    device(broker.port(), &pki, "S1").connect().await.unwrap();
}

/// A claim certificate (shared by a production batch, SPEC §6.7) reaches
/// its provisioning topics and nothing of any device: it cannot read a
/// device's topics (nor every device's) nor write them, while its own
/// provisioning request reaches the cloud and the cloud's answer reaches
/// it.
#[tokio::test]
async fn mosquitto_confines_a_claim_certificate_to_its_provisioning_topics() {
    let Some((_dir, pki, broker)) = with_mosquitto(&["S1"]) else {
        return;
    };
    let port = broker.port();
    let claim_files = pki.claim("B1").unwrap();
    let s1_serial = Serial::new("S1").unwrap();
    let new_serial = Serial::new("NEW-1").unwrap();
    let mut claim = Conn::tls(port, "NEW-1", pki.ca_cert(), Some(&claim_files))
        .connect()
        .await
        .unwrap();
    let answer = provisioning::answer_topic("claim-B1", &new_serial);
    for filter in Leaf::ALL
        .into_iter()
        .map(|leaf| topic(&s1_serial, leaf))
        .chain(["dev/#".to_owned(), "#".to_owned(), answer.clone()])
    {
        claim.subscribe(&filter).await;
    }
    let mut cloud = cloud(port, &pki).connect().await.unwrap();
    cloud.subscribe("dev/#").await;
    cloud.subscribe("prov/+/+/request").await;

    // Everything the claim certificate writes on S1's subtree is dropped;
    // its own request goes through, last.
    for leaf in Leaf::ALL {
        claim
            .publish(
                &topic(&s1_serial, leaf),
                leaf.is_retained(),
                b"forged".to_vec(),
            )
            .await;
    }
    let request = provisioning::request_topic("claim-B1", &new_serial);
    claim.publish(&request, false, b"request".to_vec()).await;
    let got = cloud.next_publish().await;
    assert_eq!(
        (got.topic.as_str(), got.payload.as_ref()),
        (request.as_str(), &b"request"[..]),
        "the first message the cloud got"
    );

    // What the cloud writes on S1's subtree never reaches the claim
    // certificate; the answer on its own topic does, last.
    for leaf in Leaf::ALL {
        cloud
            .publish(&topic(&s1_serial, leaf), false, b"for S1".to_vec())
            .await;
    }
    cloud.publish(&answer, false, b"answer".to_vec()).await;
    let got = claim.next_publish().await;
    assert_eq!(
        (got.topic.as_str(), got.payload.as_ref()),
        (answer.as_str(), &b"answer"[..]),
        "the first message the claim certificate got"
    );
    while let Ok(Some(packet)) =
        tokio::time::timeout(Duration::from_millis(300), claim.rx.recv()).await
    {
        if let Packet::Publish(p) = packet {
            assert_eq!(p.topic, answer, "the claim certificate read {}", p.topic);
        }
    }
}
