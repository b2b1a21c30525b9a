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

/// The executable `name`: the path in the environment variable `env_var`
/// if that is set (and only it), else the first in `PATH` and then in
/// `extra_dirs` (where a distribution puts it outside `PATH`).
pub fn find_program(
    name: &str,
    env_var: Option<&str>,
    extra_dirs: &[&str],
) -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    if let Some(path) = env_var.and_then(std::env::var_os) {
        let path = PathBuf::from(path);
        return is_executable(&path).then_some(path);
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// For tests: `false` if `available` (run the test); `true` after
/// [`unavailable`] said why `test` is skipped (`missing`) if not.
pub fn skip_unless(available: bool, test: &str, missing: &str) -> bool {
    if !available {
        unavailable(test, missing);
    }
    !available
}
