//! The product's other flows from the command line (issue 17, item 7):
//! accounts and sharing by email or phone, a receiver leaving, the device
//! domain name, the owner's installer rights, the installer deleting the
//! device from the owner's account, the invitation and its acceptance,
//! the owner deleting his device. Each run is its own process: what the
//! cloud alone knows (accounts, sites, invitations, registrations) lives
//! in the PKI directory's records between runs.

use super::*;

fn allowed(decision: Decision) -> bool {
    decision.is_allow()
}

#[test]
fn share_by_email_or_phone_refuses_an_unknown_account_and_the_receiver_can_leave() {
    let (bench, nvr1) = alices_nvr1(&["bob"]);
    bench.ok(&["account", "add", "carol", "--phone", "+49 151 000 002"]);

    let run = bench.run(&["share", "--serial", "NVR-1", "--to", "nobody@example.com"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stdout.trim(), "NVR-1: The account doesn't exist");
    let run = bench.run(&["share", "--serial", "NVR-1", "--to", "zoe"]);
    assert_eq!(run.stdout.trim(), "NVR-1: The account doesn't exist");
    assert!(shared_with(&nvr1).is_empty(), "nothing was shared");

    let run = bench.ok(&["share", "--serial", "NVR-1", "--to", "bob@example.com"]);
    assert_eq!(run.stdout.trim(), "NVR-1: Shared");
    bench.ok(&["share", "--serial", "NVR-1", "--to", "+49151000002"]);
    assert_eq!(shared_with(&nvr1), ["bob", "carol"]);

    let run = bench.ok(&["leave", "--serial", "NVR-1", "--account", "bob@example.com"]);
    assert_eq!(run.stdout.trim(), "NVR-1: bob@example.com left the share");
    assert_eq!(shared_with(&nvr1), ["carol"]);
    assert!(!allowed(nvr1.live_view(&cloud("bob"), 1).expect("decides")));
    let run = bench.run(&["leave", "--serial", "NVR-1", "--account", "bob"]);
    assert_eq!(run.code, Some(1), "bob has nothing left to leave: {run:?}");
}

#[test]
fn the_domain_name_is_set_resolved_for_whom_it_is_shared_and_shared_alone() {
    let (bench, nvr1) = alices_nvr1(&["bob", "carol"]);

    let run = bench.ok(&["domain", "set", "--serial", "NVR-1", "--name", "alice-home"]);
    assert_eq!(
        run.stdout.trim(),
        "NVR-1: domain name alice-home registered"
    );
    let status = bench.ok(&["status", "--serial", "NVR-1"]);
    assert!(status.stdout.contains("domain: alice-home"), "{status:?}");

    // A later run resolves from the cloud's records.
    let run = bench.ok_cli("domain resolve --name alice-home --account alice");
    assert!(
        run.stdout.starts_with("alice-home: 127.0.0.1 http "),
        "{run:?}"
    );
    assert!(run.stdout.trim().ends_with("(NVR-1)"), "{run:?}");
    let run = bench.cli("domain resolve --name alice-home --account bob");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(
        run.stdout.trim(),
        "alice-home: The device is not shared with this account"
    );

    // The documents' kind of share: the domain name alone.
    let run = bench.ok(&["share", "--serial", "NVR-1", "--to", "bob", "--domain-only"]);
    assert_eq!(run.stdout.trim(), "NVR-1: Shared (domain name only)");
    bench.ok_cli("domain resolve --name alice-home --account bob");
    assert!(
        !allowed(nvr1.live_view(&cloud("bob"), 1).expect("decides")),
        "a domain-only share gives no live view"
    );
    let run = bench.cli("domain resolve --name nowhere --account alice");
    assert_eq!(
        run.stdout.trim(),
        "nowhere: The domain name \"nowhere\" does not exist"
    );
}

#[test]
fn the_owner_grants_shows_and_revokes_installer_rights_outside_a_site() {
    let (bench, nvr1) = alices_nvr1(&["acme"]);
    let run = bench.ok(&["installer", "show", "--serial", "NVR-1"]);
    assert_eq!(run.stdout.trim(), "NVR-1: no installer");
    let run = bench.run(&["installer", "revoke", "--serial", "NVR-1"]);
    assert_eq!(run.code, Some(1), "nothing to revoke: {run:?}");

    let run = bench.ok_cli("installer grant --serial NVR-1 --to acme@example.com --permissions live-view,configuration --hours 2");
    assert_eq!(
        run.stdout.trim(),
        "NVR-1: installer rights granted to acme@example.com"
    );
    assert!(allowed(nvr1.live_view(&cloud("acme"), 1).expect("decides")));
    let run = bench.ok(&["installer", "show", "--serial", "NVR-1"]);
    let line = run.stdout.trim();
    assert!(
        line.starts_with("NVR-1: installer acme (EU): configuration (valid "),
        "{line}"
    );
    assert!(line.contains("live view (valid "), "{line}");
    assert!(!line.contains("may disable"), "{line}");

    bench.ok(&["installer", "revoke", "--serial", "NVR-1"]);
    assert!(!allowed(
        nvr1.live_view(&cloud("acme"), 1).expect("decides")
    ));
    let run = bench.run(&["installer", "grant", "--serial", "NVR-1", "--to", "nobody"]);
    assert_eq!(run.stdout.trim(), "NVR-1: The account doesn't exist");
}

#[test]
fn the_installer_deletes_the_device_from_the_owners_account_and_it_can_be_added_again() {
    let (bench, nvr1) = alices_nvr1(&["acme"]);
    bench.ok_cli("installer grant --serial NVR-1 --to acme --permissions live-view");
    let run = bench.run(&["remove-from-owner", "--serial", "NVR-1"]);
    assert_eq!(run.code, Some(1), "without \"may disable\": {run:?}");
    assert!(run.stdout.contains("not allowed"), "{run:?}");

    bench.ok_cli("installer grant --serial NVR-1 --to acme --may-disable");
    let run = bench.ok(&["remove-from-owner", "--serial", "NVR-1"]);
    assert_eq!(
        run.stdout.trim(),
        "NVR-1: deleted from the owner's account by the installer; it can be added again"
    );
    let status = bench.ok(&["status", "--serial", "NVR-1"]);
    assert!(status.stdout.contains("binding: not bound"), "{status:?}");
    assert!(!allowed(
        nvr1.live_view(&cloud("alice"), 1).expect("decides")
    ));

    bench.bind_owner("NVR-1", "dave");
    assert!(allowed(nvr1.live_view(&cloud("dave"), 1).expect("decides")));
    let run = bench.ok(&["delete", "--serial", "NVR-1"]);
    assert_eq!(
        run.stdout.trim(),
        "NVR-1: deleted from the owner's account; it can be added again"
    );
    bench.bind_owner("NVR-1", "erin");
}

#[test]
fn the_installer_invites_the_owner_who_sees_the_remarks_and_accepts_the_handover() {
    let bench = Bench::new(&["NVR-1", "NVR-2"]);
    let nvr1 = bench.installed_recorder("NVR-1", "acme");
    let nvr2 = bench.installed_recorder("NVR-2", "acme");
    let run = bench.cli("invite --installer acme --email olivia@example.com");
    assert_eq!(
        run.stdout.trim(),
        "site of installer acme: invitation-1 sent to email olivia@example.com"
    );
    let run = bench.ok(&[
        "invite",
        "--installer",
        "acme",
        "--email",
        "olivia@example.com",
        "--permissions",
        "live-view",
        "--may-disable",
        "--remarks",
        "Gate cameras",
    ]);
    assert!(run.stdout.contains("invitation-2 sent"), "{run:?}");
    let run = bench.ok(&["resend", "--installer", "acme"]);
    assert_eq!(
        run.stdout.trim(),
        "site of installer acme: invitation-3 sent again"
    );

    // The invitee registers, sees the invitation with its remarks, accepts.
    bench.accounts(&["olivia"]);
    let run = bench.ok(&["invitations", "--account", "olivia"]);
    assert_eq!(
        run.stdout.trim(),
        "olivia: invitation-3 for site-1; remarks: Gate cameras"
    );
    let run = bench.ok(&["accept", "--account", "olivia@example.com"]);
    assert!(
        run.stdout
            .contains("NVR-1: handed over to olivia@example.com"),
        "{run:?}"
    );
    assert!(run.stdout.contains("NVR-2: handed over"), "{run:?}");
    assert!(run.stdout.contains("2 of 2 devices handed over"), "{run:?}");
    for nvr in [&nvr1, &nvr2] {
        assert!(allowed(
            nvr.live_view(&cloud("olivia"), 1).expect("decides")
        ));
        assert!(allowed(nvr.live_view(&cloud("acme"), 1).expect("decides")));
    }
    let status = bench.ok(&["status", "--serial", "NVR-2"]);
    assert!(status.stdout.contains("owned by olivia (EU)"), "{status:?}");
    let run = bench.run(&["resend", "--installer", "acme"]);
    assert_eq!(run.code, Some(1), "the site is handed over: {run:?}");

    // The installer kept "may disable": it may switch the service.
    let run = bench.ok(&["service", "off", "--serial", "NVR-1"]);
    assert!(run.stdout.contains("cloud service off"), "{run:?}");
}

#[test]
fn a_handover_to_an_offline_device_completes_in_a_later_run_when_it_is_back() {
    let bench = Bench::new(&["NVR-1", "NVR-2"]);
    let _nvr1 = bench.installed_recorder("NVR-1", "acme");
    let nvr2 = bench.recorder_at_home("NVR-2");
    bench.bind_installer("NVR-2", "acme");
    bench.ok_cli("invite --installer acme --email olivia@example.com");
    bench.accounts(&["olivia"]);
    nvr2.stop().expect("NVR-2 stops");

    let run = bench.run(&["accept", "--account", "olivia"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout.contains("NVR-1: handed over to olivia"),
        "{run:?}"
    );
    assert!(run.stdout.contains("NVR-2: handover pending"), "{run:?}");

    let nvr2 = bench.recorder_at_home("NVR-2");
    // Any later run sends the pending handover to a device that is back
    // (the first may print the device before it acknowledged, or find it
    // not yet reconnected: `status` then fails; each run waits for the
    // handover of an online device before it exits). A loaded machine
    // gets a few more runs.
    let handed_over = (0..8).any(|_| {
        let run = bench.run(&["status", "--serial", "NVR-2"]);
        let done = run.succeeded() && run.stdout.contains("owned by olivia (EU)");
        if !done {
            std::thread::sleep(Duration::from_millis(500));
        }
        done
    });
    assert!(handed_over, "NVR-2 never showed olivia as its owner");
    assert!(allowed(
        nvr2.live_view(&cloud("olivia"), 1).expect("decides")
    ));
}
