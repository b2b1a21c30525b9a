//! `share` and `unshare`, checked on the device's access list.

use super::*;

#[test]
fn share_and_unshare_change_the_access_list_on_the_device() {
    let (bench, nvr1) = alices_nvr1(&["bob", "carol"]);
    assert!(shared_with(&nvr1).is_empty());
    let live_view = |who: &str| {
        nvr1.live_view(&cloud(who), 1)
            .expect("the agent decides")
            .is_allow()
    };
    assert!(!live_view("bob"), "bob has no share yet");

    let run = bench.ok(&["share", "--serial", "NVR-1", "--to", "bob"]);
    assert_eq!(run.stdout.trim(), "NVR-1: Shared");
    bench.ok(&["share", "--serial", "NVR-1", "--to", "carol"]);
    assert_eq!(shared_with(&nvr1), ["bob", "carol"]);
    assert!(live_view("bob"), "bob's share lets him watch");
    let status = bench.ok(&["status", "--serial", "NVR-1"]);
    assert!(status.stdout.contains("shared with bob (EU)"), "{status:?}");
    assert!(
        status.stdout.contains("shared with carol (EU)"),
        "{status:?}"
    );

    let run = bench.ok(&["unshare", "--serial", "NVR-1", "--account", "bob"]);
    assert_eq!(run.stdout.trim(), "NVR-1: deleted");
    assert_eq!(shared_with(&nvr1), ["carol"]);
    assert!(
        matches!(
            nvr1.live_view(&cloud("bob"), 1).expect("the agent decides"),
            Decision::Deny(_)
        ),
        "bob is denied at once"
    );

    bench.ok(&["unshare", "--serial", "NVR-1", "--all"]);
    assert!(shared_with(&nvr1).is_empty());
    let status = bench.ok(&["status", "--serial", "NVR-1"]);
    assert!(status.stdout.contains("shared with nobody"), "{status:?}");
}
