//! The single-instance lock: an advisory lock (`flock`) on `agent.lock` in
//! the state directory, held for the daemon's whole life and released by
//! the kernel when it exits, however it exits. A second agent on the same
//! state directory finds it held, names the running one (the file holds
//! its pid) and exits without touching anything: two agents would replace
//! each other's socket and write the same state files.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The lock file's name in the state directory.
pub(super) const LOCK_FILE: &str = "agent.lock";

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another agent holds the lock.
    #[error("another hc-agent ({holder}) is running on state_dir {dir}; not starting")]
    Held {
        /// The state directory.
        dir: PathBuf,
        /// "pid N" as the running agent wrote it, or "pid unknown".
        holder: String,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// The held lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub(super) struct InstanceLock {
    _file: File,
}

/// Takes the lock on `state_dir` (created if missing) and writes this
/// process's pid into it.
pub(super) fn acquire(state_dir: &Path) -> Result<InstanceLock, LockError> {
    let path = state_dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    // Not truncated on open: the holder's pid stays readable.
    // The lock is held on a read-only descriptor, so that the file system
    // of the state directory can still be remounted read-only under a
    // running agent (a recorder's flash going read-only is a fault the
    // agent must ride out, not a reason to keep the remount from
    // happening); the pid is written through a second, short-lived one.
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    let mut file = File::open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!("pid {pid}"),
                Err(_) => "pid unknown".into(),
            };
            return Err(LockError::Held {
                dir: state_dir.into(),
                holder,
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    let mut pid = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(io)?;
    writeln!(pid, "{}", std::process::id()).map_err(io)?;
    Ok(InstanceLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let held = acquire(&state).unwrap();
        let pid = std::fs::read_to_string(state.join(LOCK_FILE)).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        let second = acquire(&state).unwrap_err();
        assert!(
            second
                .to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{second}"
        );
        // The holder's pid is still there, untouched by the refused one.
        assert_eq!(std::fs::read_to_string(state.join(LOCK_FILE)).unwrap(), pid);
        drop(held);
        acquire(&state).unwrap();
    }
}
