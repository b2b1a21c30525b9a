//! Tests that need something a developer's machine may lack (mosquitto,
//! libfaketime, a C compiler, root for tmpfs or FUSE): they skip with the
//! reason printed, except when the environment variable `CI` is set, where
//! `.ci/run` installed everything and a missing piece is a failure, never a
//! silent pass.

/// `test` cannot run here because of `why`: panics when `CI` is set, else
/// prints that the test is skipped and why (the caller then returns).
pub fn unavailable(test: &str, why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {why}, and CI is set");
    }
    eprintln!("SKIPPED {test}: {why}; set CI=1 to make this a failure");
}
