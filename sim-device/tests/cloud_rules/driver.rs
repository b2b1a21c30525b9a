//! "Network busy" from the driver, against a real embedded TLS broker
//! and no recorder answering.

use super::*;

/// A broker with a PKI, and the cloud's options for it.
fn broker() -> (tempfile::TempDir, Pki, EmbeddedBroker) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path().join("pki"), &[SERIAL]).unwrap();
    let broker = EmbeddedBroker::start(BrokerConfig::from_pki(&pki)).unwrap();
    (dir, pki, broker)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Sends `RequestState` to the device; the outcome and how long it took.
async fn timed_request_state(cloud: &Cloud) -> (Result<Ack, CloudError>, Duration) {
    let started = Instant::now();
    let actor = eu(&AccountId::new("a").unwrap());
    let result = cloud
        .send(&serial(), actor, CommandBody::RequestState)
        .await;
    (result, started.elapsed())
}

#[test]
fn network_busy_when_the_device_is_offline() {
    let (_dir, pki, broker) = broker();
    let options = CloudOptions::from_pki(&pki, "127.0.0.1", broker.port()).unwrap();
    assert!(pki.dir().join("cloud-command-key.seed").is_file());
    assert_eq!(load_or_create_seed(pki.dir()).unwrap(), options.seed);
    runtime().block_on(async {
        let cloud = Cloud::connect(options, CloudModel::new()).await.unwrap();
        assert_eq!(cloud.online(&serial()), None);
        let (result, waited) = timed_request_state(&cloud).await;
        let error = result.unwrap_err();
        assert_eq!(
            error,
            CloudError::NetworkBusy {
                serial: SERIAL.into(),
                waited_ms: 3000
            }
        );
        assert_eq!(
            error.to_string(),
            "Network busy\ndevice NVR-1 did not answer within 3 s"
        );
        assert!(waited >= Duration::from_millis(2900), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        cloud.shutdown().await;
    });
}

#[test]
fn network_busy_when_an_online_device_does_not_answer() {
    // A device that reported online and its state, then went silent (no
    // last will yet): the command goes out, no acknowledgement comes back.
    let (_dir, pki, broker) = broker();
    let mut options = CloudOptions::from_pki(&pki, "127.0.0.1", broker.port()).unwrap();
    options.ack_timeout = Duration::from_millis(800);
    runtime().block_on(async {
        let cloud = Cloud::connect(options, CloudModel::new()).await.unwrap();
        publish_as_device(&pki, broker.port()).await;
        assert!(
            cloud
                .wait_online(&serial(), true, Duration::from_secs(5))
                .await
        );
        assert!(cloud
            .wait_state(&serial(), |r| r.last_seq == 41, Duration::from_secs(5))
            .await
            .is_some());
        let (result, waited) = timed_request_state(&cloud).await;
        assert!(waited >= Duration::from_millis(750));
        assert_eq!(
            result.unwrap_err().to_string(),
            "Network busy\ndevice NVR-1 did not answer within 800 ms"
        );
        cloud.shutdown().await;
    });
}

/// Publishes a retained online status and state report (last_seq 41) as
/// the device, then disconnects without clearing them.
async fn publish_as_device(pki: &Pki, port: u16) {
    use hc_protocol::codec::encode;
    use hc_protocol::limits::MAX_MESSAGE_BYTES;
    use hc_protocol::messages::DeviceStatus;
    use hc_protocol::topics::{topic, Leaf};
    use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, QoS, TlsConfiguration, Transport};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::Arc;

    let files = pki.device(SERIAL).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.ca_cert()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let mut options = MqttOptions::new(SERIAL, "127.0.0.1", port);
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(tls),
    )));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let mut state = report(Binding::Unbound, vec![], true, 41);
    state.trusted_time_floor = 0;
    // Written now, so that it counts as online (SPEC §2.4).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let online = encode(&DeviceStatus::online(now, 300), MAX_MESSAGE_BYTES).unwrap();
    let state = encode(&state, MAX_MESSAGE_BYTES).unwrap();
    client
        .publish(topic(&serial(), Leaf::State), QoS::AtLeastOnce, true, state)
        .await
        .unwrap();
    client
        .publish(
            topic(&serial(), Leaf::Status),
            QoS::AtLeastOnce,
            true,
            online,
        )
        .await
        .unwrap();
    client.disconnect().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
            Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => {}
        }
    }
}
