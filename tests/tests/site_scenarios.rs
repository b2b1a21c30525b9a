//! A site with two recorders, across the simulated cloud, the broker and
//! the real agent with its firmware clients: the installer's site-wide
//! service switch reaches the recorder that is online, reports "Network
//! busy" for the one that is powered off, and reaches that one once it is
//! back; the power-cycled recorder comes back with its access list.

use std::time::Duration;

use hc_protocol::access::{Decision, Principal};
use hc_protocol::{Reason, Serial};
use hc_testkit::broker::{BrokerConfig, EmbeddedBroker};
use hc_testkit::pki::Pki;
use sim_device::cloud::driver::load_or_create_seed;
use sim_device::cloud::{
    Cloud, CloudError, CloudModel, CloudOptions, Contact, InstallerPermissions,
};
use sim_device::recorder::{Recorder, RecorderSpec};

const FRONT: &str = "SITE-NVR-FRONT";
const BACK: &str = "SITE-NVR-BACK";
const CODE: &str = "ABCDEF";
const ONLINE: Duration = Duration::from_secs(10);

fn spec(serial: &str) -> RecorderSpec {
    let mut spec = RecorderSpec::new(serial);
    spec.verification_code = CODE.into();
    spec
}

/// `spec` with its files kept in `dir`, to start it again there.
fn at_home(mut spec: RecorderSpec, dir: &std::path::Path) -> RecorderSpec {
    spec.home = Some(dir.to_owned());
    spec
}

fn serial(text: &str) -> Serial {
    Serial::new(text).unwrap()
}

#[test]
fn a_site_wide_service_switch_reaches_online_recorders_and_an_offline_one_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path().join("pki"), &[FRONT, BACK]).unwrap();
    let seed = load_or_create_seed(pki.dir()).unwrap();
    let broker = EmbeddedBroker::start(BrokerConfig::from_pki(&pki)).unwrap();
    let (host, port) = ("127.0.0.1", broker.port());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    runtime.block_on(async {
        let mut model = CloudModel::new();
        model.register_device(FRONT, CODE, "EU").unwrap();
        model.register_device(BACK, CODE, "EU").unwrap();
        let [installer, olivia] = [
            ("installer", "ops@installer.example"),
            ("olivia", "olivia@example.com"),
        ]
        .map(|(name, email)| {
            model
                .register_account(name, Some(email), None, "EU")
                .unwrap()
        });
        let cloud = Cloud::connect(CloudOptions::with_seed(&pki, host, port, seed), model)
            .await
            .unwrap();
        let key = cloud.public_key();
        let front = Recorder::start(&pki, host, port, key, spec(FRONT)).unwrap();
        let back_dir = dir.path().join("back");
        let back = Recorder::start(&pki, host, port, key, at_home(spec(BACK), &back_dir)).unwrap();
        for s in [FRONT, BACK] {
            assert!(
                cloud.wait_online(&serial(s), true, ONLINE).await,
                "{s} online"
            );
        }

        // The installer sets up the site and hands it over, keeping the
        // right to switch the cloud service.
        let site = cloud
            .with_model(|m| m.create_site(&installer, "Warehouse"))
            .unwrap();
        for s in [FRONT, BACK] {
            cloud
                .execute_plan(|m| m.plan_add_to_site(&installer, site, s, CODE))
                .await
                .unwrap();
        }
        let now = cloud.now();
        let permissions = InstallerPermissions {
            allow_disable_cloud: true,
            ..InstallerPermissions::default()
        };
        let invitation = cloud
            .with_model(|m| {
                m.invite(
                    &installer,
                    site,
                    Contact::email("olivia@example.com")?,
                    permissions,
                    "Handover",
                    now,
                )
            })
            .unwrap();
        let handed = cloud.accept_invitation(invitation, &olivia).await.unwrap();
        assert!(handed.iter().all(|(_, r)| r.is_ok()), "{handed:?}");
        let owner = Principal::Cloud(olivia.clone());
        assert_eq!(back.live_view(&owner, 1).unwrap(), Decision::Allow);

        // The back recorder loses power; the installer switches the whole
        // site off.
        back.stop().unwrap();
        assert!(cloud.wait_online(&serial(BACK), false, ONLINE).await);
        let results = cloud
            .set_cloud_service_for_site(&installer, site, false)
            .await
            .unwrap();
        let result_of = |s: &str| {
            results
                .iter()
                .find(|(serial, _)| serial.as_str() == s)
                .map(|(_, r)| r.clone())
                .unwrap_or_else(|| panic!("no result for {s}: {results:?}"))
        };
        assert_eq!(result_of(FRONT), Ok(()));
        assert!(
            matches!(result_of(BACK), Err(CloudError::NetworkBusy { .. })),
            "{results:?}"
        );
        assert_eq!(
            front.live_view(&owner, 1).unwrap(),
            Decision::Deny(Reason::CloudServiceDisabled)
        );
        let installer_principal = Principal::Cloud(installer.clone());
        assert_ne!(
            front.live_view(&installer_principal, 1).unwrap(),
            Decision::Deny(Reason::CloudServiceDisabled),
            "the installer is never cut off by its own switch"
        );

        // Power is back: the recorder kept its owner and its switch state
        // through the power cycle, and the installer's retry reaches it.
        let back = Recorder::start(&pki, host, port, key, at_home(spec(BACK), &back_dir)).unwrap();
        assert!(cloud.wait_online(&serial(BACK), true, ONLINE).await);
        assert_eq!(back.live_view(&owner, 1).unwrap(), Decision::Allow);
        cloud
            .execute_plan(|m| m.plan_set_cloud_service(&installer, BACK, false))
            .await
            .unwrap();
        assert_eq!(
            back.live_view(&owner, 1).unwrap(),
            Decision::Deny(Reason::CloudServiceDisabled)
        );
        let report = cloud
            .wait_state(&serial(BACK), |r| !r.cloud_service, ONLINE)
            .await;
        assert!(report.is_some(), "the state report shows the service off");

        cloud.shutdown().await;
        front.stop().unwrap();
        back.stop().unwrap();
    });
}
