//! The embedded rumqttd broker with mutual TLS.

use super::*;

#[tokio::test]
async fn embedded_device_receives_what_the_cloud_publishes() {
    let (_dir, pki) = pki(&["S1"]);
    let broker = embedded(&pki);
    device_receives_cloud_commands(broker.port(), &pki).await;
}

#[tokio::test]
async fn embedded_refuses_a_client_without_a_certificate() {
    let (_dir, pki) = pki(&["S1"]);
    let broker = embedded(&pki);
    let error = refuses_no_certificate(broker.port(), &pki).await;
    eprintln!("refused as expected: {error}");
    // The broker still serves good clients afterwards.
    device(broker.port(), &pki, "S1").connect().await.unwrap();
}

#[tokio::test]
async fn embedded_refuses_a_client_certificate_from_another_ca() {
    let (_dir, pki) = pki(&["S1"]);
    let other = pki.generate_unrelated().unwrap();
    let broker = embedded(&pki);
    let error = refuses_another_ca(broker.port(), &pki, &other).await;
    eprintln!("refused as expected: {error}");
}

#[tokio::test]
async fn clients_refuse_an_unrelated_or_expired_broker_certificate() {
    let (_dir, pki) = pki(&["S1"]);
    let other = pki.generate_unrelated().unwrap();
    let expired = pki.expired_server().unwrap();
    for (what, server, reason) in [
        ("unrelated", other.server(), "UnknownIssuer"),
        ("expired", &expired, "certificate expired"),
    ] {
        let broker = EmbeddedBroker::start(BrokerConfig::mutual_tls(
            pki.ca_cert().to_owned(),
            server.cert.clone(),
            server.key.clone(),
        ))
        .unwrap();
        let error = refused(device(broker.port(), &pki, "S1"), reason).await;
        eprintln!("{what} broker certificate refused as expected: {error}");
    }
}

#[tokio::test]
async fn embedded_keeps_retained_state_and_publishes_the_last_will() {
    let (_dir, pki) = pki(&["S1"]);
    let broker = embedded(&pki);
    let mut conn = device(broker.port(), &pki, "S1");
    conn.will = Some(LastWill::new(
        "dev/S1/status",
        b"offline".to_vec(),
        QoS::AtLeastOnce,
        true,
    ));
    let mut s1 = conn.connect().await.unwrap();
    s1.publish("dev/S1/status", true, b"online".to_vec()).await;
    s1.publish("dev/S1/state", true, b"state-1".to_vec()).await;

    // A cloud that subscribes later gets the retained state.
    let mut cloud = cloud(broker.port(), &pki).connect().await.unwrap();
    cloud.subscribe("dev/+/state").await;
    let state = cloud.next_publish().await;
    assert_eq!(
        (state.topic.as_str(), state.payload.as_ref(), state.retain),
        ("dev/S1/state", &b"state-1"[..], true)
    );
    cloud.subscribe("dev/+/status").await;
    assert_eq!(cloud.next_publish().await.payload.as_ref(), b"online");

    // The device dies without DISCONNECT: the will goes out, and is
    // retained for whoever subscribes next.
    s1.kill();
    let will = cloud.next_publish().await;
    assert_eq!(
        (will.topic.as_str(), will.payload.as_ref()),
        ("dev/S1/status", &b"offline"[..])
    );
    let mut late = Conn::tls(broker.port(), "cloud-2", pki.ca_cert(), Some(pki.cloud()))
        .connect()
        .await
        .unwrap();
    late.subscribe("dev/S1/status").await;
    assert_eq!(late.next_publish().await.payload.as_ref(), b"offline");
}

#[tokio::test]
async fn embedded_persistent_session_survives_a_restart() {
    let (_dir, pki) = pki(&["S1"]);
    let mut broker = embedded(&pki);
    let port = broker.port();
    let mut s1 = persistent_s1(port, &pki).await;
    s1.subscribe("dev/S1/cmd").await;

    cloud_retains(port, &pki).await;

    broker.restart().unwrap();
    assert_eq!(broker.port(), port);
    // The old connection was cut.
    tokio::time::timeout(WAIT, async { while s1.rx.recv().await.is_some() {} })
        .await
        .expect("the connection ends with the restart");

    // Queued for the offline device...
    let mut cloud = cloud(port, &pki).connect().await.unwrap();
    cloud
        .publish("dev/S1/cmd", false, b"while away".to_vec())
        .await;
    // ...and delivered when it comes back to its session.
    back_on_session(port, &pki, b"while away").await;
    // Retained messages survive too.
    assert_state_retained(&mut cloud).await;
}

#[tokio::test]
async fn embedded_stop_frees_the_port_for_a_new_broker() {
    let (_dir, pki) = pki(&["S1"]);
    let broker = embedded(&pki);
    let port = broker.port();
    let _s1 = device(port, &pki, "S1").connect().await.unwrap();
    broker.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    let again = EmbeddedBroker::start(BrokerConfig::from_pki(&pki).with_port(port)).unwrap();
    assert_eq!(again.port(), port);
    device_receives_cloud_commands(port, &pki).await;
}

#[tokio::test]
async fn embedded_insecure_plaintext_listener_works_without_tls() {
    let broker = EmbeddedBroker::start(BrokerConfig::insecure_plaintext()).unwrap();
    let plain = |id| Conn {
        port: broker.port(),
        id,
        tls: None,
        clean: true,
        will: None,
    };
    let mut s1 = plain("S1").connect().await.unwrap();
    s1.subscribe("dev/S1/cmd").await;
    let mut cloud = plain("cloud").connect().await.unwrap();
    cloud.publish("dev/S1/cmd", false, b"plain".to_vec()).await;
    assert_eq!(s1.next_publish().await.payload.as_ref(), b"plain");
}
