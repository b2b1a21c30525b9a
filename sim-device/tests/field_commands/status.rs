//! `status`: what the broker holds about a device.

use super::*;

#[test]
fn status_shows_the_binding_switches_and_access_list_of_an_online_device() {
    let (bench, _nvr1) = alices_nvr1(&["bob"]);
    bench.ok_cli("share --serial NVR-1 --to bob --permissions live-view,playback --channels 1,2");

    let run = bench.ok(&["status", "--serial", "NVR-1"]);
    let out = &run.stdout;
    assert!(out.starts_with("NVR-1: online\n"), "{out}");
    assert!(out.contains("binding: owned by alice (EU)"), "{out}");
    assert!(out.contains("cloud service: on"), "{out}");
    let share = out
        .lines()
        .find(|l| l.contains("shared with bob (EU)"))
        .unwrap_or_else(|| panic!("bob is not in the access list:\n{out}"));
    assert!(share.contains("LiveView+Playback"), "{share}");
    assert!(share.contains("channels 1,2"), "{share}");
}

#[test]
fn status_of_a_device_that_never_connected_says_so_and_fails() {
    let bench = Bench::new(&["NVR-1"]);
    let run = bench.run(&["status", "--serial", "NVR-404"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.starts_with("NVR-404: unknown"), "{run:?}");
}
