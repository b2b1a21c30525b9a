//! `service on|off`: one device, and a whole site.

use super::*;

#[test]
fn service_off_and_on_switches_one_device() {
    let bench = Bench::new(&["NVR-1", "NVR-2"]);
    let nvr1 = bench.recorder("NVR-1");
    let nvr2 = bench.recorder("NVR-2");
    bench.bind_installer("NVR-1", "acme");
    bench.bind_installer("NVR-2", "acme");
    assert!(cloud_service(&nvr1));

    let run = bench.ok(&["service", "off", "--serial", "NVR-1"]);
    assert_eq!(run.stdout.trim(), "NVR-1: cloud service off");
    assert!(!wait_cloud_service(&nvr1, false), "NVR-1 is still on");
    assert!(cloud_service(&nvr2), "NVR-2 was not named and stays on");
    let status = bench.ok(&["status", "--serial", "NVR-1"]);
    assert!(
        status.stdout.contains("cloud service: off"),
        "the device's report shows the switch: {status:?}"
    );

    bench.ok(&["service", "on", "--serial", "NVR-1"]);
    assert!(wait_cloud_service(&nvr1, true), "NVR-1 is still off");
}

// ---------------------------------------------------------------- service, a site

#[test]
fn service_for_a_site_reaches_every_device_of_the_site_and_names_the_offline_one() {
    site_switch(&Bench::new(&["NVR-1", "NVR-2", "NVR-3", "NVR-4"]));
}

#[test]
fn service_for_a_site_reaches_every_device_of_the_site_on_mosquitto() {
    if skip_without_mosquitto("service_for_a_site_reaches_every_device_of_the_site_on_mosquitto") {
        return;
    }
    site_switch(&Bench::with_broker(
        &["NVR-1", "NVR-2", "NVR-3", "NVR-4"],
        true,
    ));
}

/// Installer acme's site is NVR-1..3, zeta's is NVR-4: switching acme's
/// site switches NVR-1..3 and leaves NVR-4; with NVR-3 stopped, NVR-3 is
/// named as offline and the command fails.
fn site_switch(bench: &Bench) {
    let nvr1 = bench.recorder("NVR-1");
    let nvr2 = bench.recorder("NVR-2");
    let nvr3 = bench.recorder("NVR-3");
    let other = bench.recorder("NVR-4");
    for serial in ["NVR-1", "NVR-2", "NVR-3"] {
        bench.bind_installer(serial, "acme");
    }
    bench.bind_installer("NVR-4", "zeta");

    // The whole site online: every device switched, success.
    let run = bench.ok(&["service", "off", "--site", "acme"]);
    for serial in ["NVR-1", "NVR-2", "NVR-3"] {
        assert_eq!(
            line_of(&run.stdout, serial),
            format!("{serial}: cloud service off")
        );
    }
    assert!(
        !run.stdout.contains("NVR-4"),
        "another installer's device is not in the site: {run:?}"
    );
    assert!(
        run.stdout
            .contains("site of installer acme: 3 devices; 3 switched off, 0 offline, 0 failed"),
        "{run:?}"
    );
    for recorder in [&nvr1, &nvr2, &nvr3] {
        assert!(
            !wait_cloud_service(recorder, false),
            "{} is still on",
            recorder.serial()
        );
    }
    assert!(cloud_service(&other), "NVR-4 (zeta's) stays on");

    // One device of the site goes offline: the others are switched, the
    // offline one is named as offline, and the command fails.
    nvr3.stop().expect("NVR-3 stops");
    let run = bench.run(&["service", "on", "--site", "acme"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(line_of(&run.stdout, "NVR-1"), "NVR-1: cloud service on");
    assert_eq!(line_of(&run.stdout, "NVR-2"), "NVR-2: cloud service on");
    let offline = line_of(&run.stdout, "NVR-3");
    assert!(
        offline.starts_with("NVR-3: device NVR-3 is offline"),
        "{offline}"
    );
    assert!(!run.stdout.contains("Network busy"), "{run:?}");
    assert!(
        run.stdout
            .contains("site of installer acme: 3 devices; 2 switched on, 1 offline, 0 failed"),
        "{run:?}"
    );
    assert!(wait_cloud_service(&nvr1, true), "NVR-1 is still off");
    assert!(wait_cloud_service(&nvr2, true), "NVR-2 is still off");
}

#[test]
fn service_for_an_installer_without_devices_fails_and_sends_nothing() {
    let bench = Bench::new(&["NVR-1"]);
    let nvr1 = bench.installed_recorder("NVR-1", "acme");
    let run = bench.run(&["service", "off", "--site", "nobody"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout
            .contains("no device on this broker names nobody as its installer"),
        "{run:?}"
    );
    assert!(cloud_service(&nvr1), "acme's device was not touched");
}

#[test]
fn service_with_both_site_and_serial_is_a_usage_error() {
    let bench = Bench::new(&["NVR-1"]);
    let run = bench.run(&["service", "off", "--site", "acme", "--serial", "NVR-1"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("not both"), "{run:?}");
}
