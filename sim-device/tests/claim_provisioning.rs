//! Provisioning by claim certificate (SPEC §6.7) through mosquitto and its
//! claim ACL: a recorder that has only its batch's claim certificate is
//! refused while the cloud does not know its verification code, keeps
//! asking, and once the cloud knows it receives its own certificate (for a
//! key it made itself), connects with it and is online. Skipped without
//! mosquitto unless `CI` is set.

use std::time::Duration;

use hc_protocol::local::LinkState;
use hc_protocol::Serial;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sim_device::cloud::driver::{command_public_key, load_or_create_seed};
use sim_device::cloud::{Cloud, CloudModel, CloudOptions};
use sim_device::mosquitto::{skip_without_mosquitto, Mosquitto};
use sim_device::pki::Pki;
use sim_device::recorder::{Recorder, RecorderSpec};

const SERIAL: &str = "NVR-CLAIMED";

#[test]
fn a_recorder_with_only_a_claim_certificate_provisions_itself_once_the_cloud_knows_its_code() {
    if skip_without_mosquitto(
        "a_recorder_with_only_a_claim_certificate_provisions_itself_once_the_cloud_knows_its_code",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // No certificate for the recorder: only the batch's claim.
    let pki = Pki::generate(dir.path(), &[]).unwrap();
    let claim = pki.claim("B7").unwrap();
    let mosquitto = Mosquitto::start(&pki).unwrap();
    let seed = load_or_create_seed(pki.dir()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The cloud registered the recorder with another code than its label's.
    let mut model = CloudModel::new();
    model.register_device(SERIAL, "XYZXYZ", "EU").unwrap();
    let options = CloudOptions::from_pki(&pki, mosquitto.host(), mosquitto.port()).unwrap();
    let cloud = runtime.block_on(Cloud::connect(options, model)).unwrap();

    let mut spec = RecorderSpec::new(SERIAL);
    spec.claim = Some(claim.clone());
    spec.renew_retry_secs = 1;
    let recorder = Recorder::start(
        &pki,
        mosquitto.host(),
        mosquitto.port(),
        command_public_key(&seed),
        spec,
    )
    .unwrap();
    let credentials = recorder.dir().join("state/credentials");
    let serial = Serial::new(SERIAL).unwrap();

    // Refused (a wrong code): it stays off the device topics, with no
    // certificate, and keeps its key for the next request.
    std::thread::sleep(Duration::from_secs(3));
    assert_ne!(recorder.status().unwrap().link, LinkState::Connected);
    assert!(credentials.join("pending.key").is_file());
    assert!(!credentials.join("next.pem").exists());
    assert!(!credentials.join("current.pem").exists());
    assert_eq!(cloud.online(&serial), None, "nothing on the device topics");

    // The cloud learns the code on the label: the next request succeeds.
    cloud.with_model(|model| model.register_device(SERIAL, "ABCDEF", "EU").unwrap());
    let online = runtime.block_on(cloud.wait_online(&serial, true, Duration::from_secs(20)));
    assert!(
        online,
        "the recorder never came online with its own certificate"
    );
    let status = recorder.status().unwrap();
    assert_eq!(status.link, LinkState::Connected);
    assert!(status.certificate_not_after.is_some());
    // Its own pair, in use since it connected; the claim is untouched.
    let current = credentials.join("current.pem");
    assert!(current.is_file());
    assert!(!credentials.join("pending.key").exists());
    let der = CertificateDer::pem_file_iter(&current)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let claim_der = CertificateDer::pem_file_iter(&claim.cert)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_ne!(der, claim_der);
    assert!(
        der.as_ref()
            .windows(SERIAL.len())
            .any(|w| w == SERIAL.as_bytes()),
        "the certificate names the serial"
    );
    runtime.block_on(cloud.shutdown());
    drop(recorder);
}
