//! A wall clock shifted for the agent process alone, with libfaketime
//! preloaded into it (never the `faketime` wrapper, which forks). The
//! shift is read from a file on every clock reading, so a test can make
//! the clock jump while the agent runs; the monotonic clocks are left
//! alone (the agent anchors signed time to them).

use std::path::{Path, PathBuf};

/// Where Debian's libfaketime package installs the library.
pub const LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The library, if installed. Missing: a panic under CI (`CI=true`), else
/// `None` after printing why the test is skipped.
pub fn library(test: &str) -> Option<PathBuf> {
    let path = Path::new(LIBRARY);
    if path.exists() {
        return Some(path.to_owned());
    }
    crate::skip::unavailable(
        test,
        &format!("{LIBRARY} is missing (apt-get install faketime)"),
    );
    None
}

/// The shift of one agent's wall clock, in seconds (negative: behind).
pub struct WallClockShift {
    library: PathBuf,
    file: PathBuf,
}

impl WallClockShift {
    /// A shift of `secs`, kept in `dir`.
    pub fn new(library: PathBuf, dir: &Path, secs: i64) -> WallClockShift {
        let shift = WallClockShift {
            library,
            file: dir.join("faketime.offset"),
        };
        shift.set(secs);
        shift
    }

    /// Moves the agent's wall clock to `secs` off the real one, now.
    pub fn set(&self, secs: i64) {
        std::fs::write(&self.file, format!("{secs:+}\n")).expect("faketime offset file");
    }

    /// The environment of the agent process.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", self.library.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".to_string()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
        ]
    }
}
