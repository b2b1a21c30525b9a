//! The simulated cloud as certificate authority (SPEC §6.6): a simulated
//! recorder whose certificate is near its end asks for a new one, the
//! simulated cloud issues it from the PKI's CA in a signed
//! `InstallCertificate`, and the recorder switches to it; its state report
//! then carries the new end date. A repeated request for the same key is
//! answered with the same certificate, not a second one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hc_protocol::Serial;
use sim_device::broker::{BrokerConfig, EmbeddedBroker};
use sim_device::cloud::driver::{command_public_key, load_or_create_seed};
use sim_device::cloud::{Cloud, CloudModel, CloudOptions};
use sim_device::pki::Pki;
use sim_device::recorder::{Recorder, RecorderSpec};

const SERIAL: &str = "NVR-RENEW";

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[test]
fn the_simulated_cloud_renews_a_recorders_certificate_near_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut pki = Pki::generate(dir.path(), &[SERIAL]).unwrap();
    let old_not_after = now_s() + 60;
    pki.add_device_valid(SERIAL, now_s() - 60, old_not_after)
        .unwrap();
    let broker = EmbeddedBroker::start(BrokerConfig::from_pki(&pki)).unwrap();
    let seed = load_or_create_seed(pki.dir()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = CloudOptions::from_pki(&pki, broker.host(), broker.port()).unwrap();
    let cloud = runtime
        .block_on(Cloud::connect(options, CloudModel::new()))
        .unwrap();

    let mut spec = RecorderSpec::new(SERIAL);
    // Due at once: the end is nearer than the margin.
    spec.renew_before_end_secs = 55;
    spec.renew_retry_secs = 2;
    let recorder = Recorder::start(
        &pki,
        broker.host(),
        broker.port(),
        command_public_key(&seed),
        spec,
    )
    .unwrap();
    let serial = Serial::new(SERIAL).unwrap();
    let renewed = runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let not_after = cloud
                .state(&serial)
                .and_then(|report| report.certificate_not_after);
            if not_after.is_some_and(|at| at > old_not_after) {
                return not_after;
            }
            if tokio::time::Instant::now() >= deadline {
                return not_after;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let year = 365 * 24 * 3600;
    assert!(
        renewed.is_some_and(|at| at >= now_s() + year - 120),
        "not renewed: certificate_not_after {renewed:?}, old {old_not_after}"
    );
    let status = recorder.status().unwrap();
    assert_eq!(status.certificate_not_after, renewed);
    // One certificate for the key: the device's repeated requests while
    // it waited got the same envelope, so it holds exactly one new pair
    // and asks for nothing more.
    let credentials = recorder.dir().join("state/credentials");
    assert!(credentials.join("current.pem").is_file());
    assert!(!credentials.join("pending.key").exists());
    assert!(!credentials.join("refused.pem").exists());
    runtime.block_on(cloud.shutdown());
    drop(recorder);
}
