//! A device that cannot answer: offline (its retained status says so, or
//! says online but was not refreshed in time) or silent (online, but not
//! acknowledging).

use super::*;

#[test]
fn an_offline_device_gives_the_clear_offline_error_and_a_non_zero_exit() {
    let (bench, nvr1) = alices_nvr1(&["bob", "carol"]);
    bench.ok(&["share", "--serial", "NVR-1", "--to", "bob"]);
    nvr1.stop().expect("NVR-1 stops");

    for args in [
        &["share", "--serial", "NVR-1", "--to", "carol"][..],
        &["unshare", "--serial", "NVR-1", "--all"],
        &["service", "off", "--serial", "NVR-1"],
        &[
            "bind", "--serial", "NVR-1", "--code", CODE, "--owner", "dave",
        ],
    ] {
        let run = bench.run(args);
        assert_eq!(run.code, Some(1), "{args:?}: {run:?}");
        assert!(
            run.stdout.starts_with("NVR-1: device NVR-1 is offline"),
            "{args:?}: {run:?}"
        );
        assert!(!run.stdout.contains("Network busy"), "{args:?}: {run:?}");
    }

    // Status still shows the last report (bob's share), flagged offline,
    // and fails like `systemctl status` of a stopped unit.
    let run = bench.run(&["status", "--serial", "NVR-1"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.starts_with("NVR-1: offline"), "{run:?}");
    assert!(run.stdout.contains("its last state report:"), "{run:?}");
    assert!(run.stdout.contains("shared with bob (EU)"), "{run:?}");
}

#[test]
fn an_online_device_that_does_not_answer_is_network_busy() {
    let bench = Bench::new(&["NVR-9"]);
    // A device whose retained status says online (a crash the broker has
    // not noticed yet) and whose agent does not answer commands.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let fresh = DeviceStatus::online(now_secs(), 300);
    runtime.block_on(publish_silent_device(&bench, "NVR-9", "alice", fresh));
    bench.accounts(&["bob"]);

    let run = bench.run(&["share", "--serial", "NVR-9", "--to", "bob"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(
        run.stdout.trim(),
        "NVR-9: Network busy\ndevice NVR-9 did not answer within 3 s"
    );
}

#[test]
fn an_online_status_not_refreshed_in_time_is_offline_since_it_was_written() {
    let bench = Bench::new(&["NVR-8"]);
    // The retained status of a device whose broker node died an hour ago
    // without publishing its will: "online", written an hour ago with a
    // promise to refresh every 5 minutes.
    let written = now_secs() - 3_600;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let stale = DeviceStatus::online(written, 300);
    runtime.block_on(publish_silent_device(&bench, "NVR-8", "alice", stale));
    bench.accounts(&["bob"]);
    let since = format!("offline since {}", utc(written));

    let run = bench.run(&["status", "--serial", "NVR-8"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout.starts_with(&format!(
            "NVR-8: {since} (its retained status says online but was not refreshed in time"
        )),
        "{run:?}"
    );
    assert!(run.stdout.contains("its last state report:"), "{run:?}");

    for args in [
        &["share", "--serial", "NVR-8", "--to", "bob"][..],
        &["service", "off", "--serial", "NVR-8"],
    ] {
        let started = Instant::now();
        let run = bench.run(args);
        assert_eq!(run.code, Some(1), "{args:?}: {run:?}");
        assert!(
            run.stdout
                .starts_with(&format!("NVR-8: device NVR-8 is {since} (")),
            "{args:?}: {run:?}"
        );
        assert!(run.stdout.contains("nothing was sent"), "{args:?}: {run:?}");
        assert!(!run.stdout.contains("Network busy"), "{args:?}: {run:?}");
        // Said at once, not after the acknowledgement timeout.
        assert!(started.elapsed() < Duration::from_secs(3), "{args:?}");
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

// ---------------------------------------------------------------- a silent device

/// The device's TLS identity for a raw MQTT client.
fn device_tls(pki: &Pki, serial: &str) -> rustls::ClientConfig {
    let files = pki.device(serial).expect("the device certificate");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.ca_cert()).expect("read the CA") {
        roots.add(cert.expect("parse the CA")).expect("add the CA");
    }
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .expect("read the certificate")
        .collect::<Result<Vec<_>, _>>()
        .expect("parse the certificate");
    let key = PrivateKeyDer::from_pem_file(&files.key).expect("read the key");
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client identity")
}

fn owned_report(serial: &str, owner: &str) -> StateReport {
    let eu = Region::new("EU").expect("a region");
    StateReport {
        serial: Serial::new(serial).expect("a serial"),
        agent_version: Text::new("0.1.0").expect("a version"),
        region: eu.clone(),
        channel_count: 8,
        binding: Binding::Owned {
            owner: AccountRef {
                id: AccountId::new(owner).expect("an account id"),
                region: eu,
            },
            installer: None,
            installer_grants: InstallerGrants::default(),
        },
        shares: heapless::Vec::new(),
        cloud_service: true,
        platform_access: true,
        domain: DomainName::new(&serial.to_lowercase()).expect("a domain"),
        last_seq: 0,
        trusted_time_floor: 0,
        reports_dropped: 0,
        clock_offset_ms: None,
        sessions_contested: 0,
        sessions_lost: 0,
        behind: false,
        command_key_ids: heapless::Vec::from_slice(&[1]).expect("one id"),
        certificate_not_after: None,
    }
}

/// Publishes, as the device, a retained "online" status and state report,
/// then leaves without a last will: the broker keeps saying online, and
/// nobody answers the device's commands.
async fn publish_silent_device(bench: &Bench, serial: &str, owner: &str, status: DeviceStatus) {
    let mut options = MqttOptions::new(serial, bench.broker.host(), bench.broker.port());
    options.set_keep_alive(Duration::from_secs(5));
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(device_tls(&bench.pki, serial)),
    )));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let parsed = Serial::new(serial).expect("a serial");
    let status = codec::encode(&status, MAX_MESSAGE_BYTES).expect("encode");
    let report = codec::encode(&owned_report(serial, owner), MAX_MESSAGE_BYTES).expect("encode");
    for (leaf, payload) in [(Leaf::Status, status), (Leaf::State, report)] {
        client
            .publish(
                topics::topic(&parsed, leaf),
                QoS::AtLeastOnce,
                true,
                payload,
            )
            .await
            .expect("queue the publish");
    }
    let acked = tokio::time::timeout(Duration::from_secs(5), async {
        let mut pubacks = 0;
        while pubacks < 2 {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => pubacks += 1,
                Ok(_) => {}
                Err(e) => panic!("the silent device's connection: {e}"),
            }
        }
    })
    .await;
    assert!(
        acked.is_ok(),
        "the broker acknowledged the retained messages"
    );
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
}
