//! The state store: one versioned state file on flash with an integrity
//! check, written atomically, with the previous good copy kept.
//!
//! A save writes `<name>.tmp`, fsyncs it, renames the current `<name>` to
//! `<name>.prev`, renames the tmp file to `<name>` and fsyncs the
//! directory. At every crash point, loading finds the old state or the new
//! one, never a mixture:
//! - before the first rename: `<name>` is the old state (tmp is ignored);
//! - between the renames: `<name>` is missing, `<name>.prev` is the old
//!   state and `<name>.tmp` the new one, complete and synced: load finishes
//!   the save and uses the new state;
//! - after the second rename: `<name>` is the new, fully written state.
//!
//! A damaged or lost `<name>` (bit rot, truncation by a broken flash, a
//! deleted file) is reported as `Loaded::Recovered` and `<name>.prev` used:
//! the caller must treat that state as possibly behind. Only when both are bad does loading fail. The
//! next save then writes over the damaged `<name>` and leaves `<name>.prev`,
//! the last good copy, in place.

#[cfg(any(test, feature = "testing"))]
mod faults;
mod file_format;
mod flash;
mod stored;

use std::path::{Path, PathBuf};

#[cfg(any(test, feature = "testing"))]
pub use faults::{Fault, FaultyFlash};
pub use file_format::{FormatError, FORMAT_VERSION, MAX_PAYLOAD, OLDEST_READABLE_VERSION};
pub use flash::{Flash, RealFlash};
use hc_protocol::Reason;
use serde::Serialize;
pub use stored::Stored;

/// Why a save or a load failed. A failed save leaves what `load` returns
/// unchanged.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("state {step} failed for {path}: {source}")]
    Io {
        /// Which step of the save or load ("write", "fsync", ...).
        step: &'static str,
        /// The file or directory it was done on.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The state could not be turned into a file (for example a payload
    /// over `MAX_PAYLOAD`); nothing was written.
    #[error("state does not encode: {0}")]
    Encode(FormatError),
    /// Both the state file and its previous copy exist but neither is a
    /// good state (or one is damaged and the other missing).
    #[error("no usable state: {name} is {main}; {name}.prev is {prev}")]
    NoGoodCopy {
        /// The state file's name.
        name: String,
        /// What is wrong with it.
        main: String,
        /// What is wrong with the previous copy.
        prev: String,
    },
}

impl StoreError {
    /// The reason a refused change carries when its state could not be saved.
    pub fn reason(&self) -> Reason {
        Reason::StorageFailed
    }
}

/// What loading found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded<T> {
    /// No state file at all: the first start.
    Fresh,
    /// The state file.
    Main(T),
    /// The state file was missing or damaged (`problem`); the previous good
    /// copy is used.
    Recovered {
        /// The state from the previous copy.
        value: T,
        /// Why the state file itself was not used.
        problem: String,
    },
}

/// The state file, its previous good copy and its temporary file in one
/// directory, written through `F` (the real flash, or a faulty one in
/// tests).
pub struct StateStore<F: Flash> {
    flash: F,
    dir: PathBuf,
    main: PathBuf,
    prev: PathBuf,
    tmp: PathBuf,
}

impl<F: Flash> StateStore<F> {
    /// A store of files named `name`, `name.prev` and `name.tmp` in `dir`.
    pub fn new(flash: F, dir: PathBuf, name: &str) -> Self {
        StateStore {
            main: dir.join(name),
            prev: dir.join(format!("{name}.prev")),
            tmp: dir.join(format!("{name}.tmp")),
            dir,
            flash,
        }
    }

    /// The flash the store writes through; tests arm their faults here.
    #[cfg(any(test, feature = "testing"))]
    pub fn flash(&mut self) -> &mut F {
        &mut self.flash
    }

    /// The state file's path, `<dir>/<name>`.
    pub fn path(&self) -> &Path {
        &self.main
    }

    /// Writes `value` durably. On error, what `load` returns is unchanged.
    pub fn save<T: Serialize>(&mut self, value: &T) -> Result<(), StoreError> {
        let payload = postcard::to_allocvec(value)
            .map_err(|e| StoreError::Encode(FormatError::Payload(e.to_string())))?;
        let bytes = file_format::encode(&payload).map_err(StoreError::Encode)?;
        let result = self.write_steps(&bytes);
        if result.is_err() {
            let _ = self.flash.remove(&self.tmp);
        }
        result
    }

    fn write_steps(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let io = |step: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { step, path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io("directory creation", &self.dir))?;
        self.flash
            .write_new(&self.tmp, bytes)
            .map_err(io("write", &self.tmp))?;
        self.flash
            .sync_file(&self.tmp)
            .map_err(io("fsync", &self.tmp))?;
        // Only a good current file becomes the backup: after a load that
        // fell back to `<name>.prev`, that copy is the last good state and a
        // damaged `<name>` must not replace it. A good file of an older
        // format (the first save after an update) is a good backup too: it
        // is still read.
        let main_is_good = self
            .flash
            .read(&self.main)
            .map_err(io("read", &self.main))?
            .is_some_and(|current| file_format::decode_any(&current).is_ok());
        if main_is_good {
            self.flash
                .rename(&self.main, &self.prev)
                .map_err(io("rename to backup", &self.main))?;
        }
        if let Err(source) = self.flash.rename(&self.tmp, &self.main) {
            if main_is_good {
                // Put the old state back where it was; load copes either way.
                let _ = self.flash.rename(&self.prev, &self.main);
            }
            return Err(StoreError::Io {
                step: "rename into place",
                path: self.tmp.clone(),
                source,
            });
        }
        if let Err(source) = self.flash.sync_dir(&self.dir) {
            // The new file is in place but not known to be durable, and the
            // caller will refuse the change: undo it, so that a restart
            // cannot bring back a change that was never acknowledged.
            if main_is_good {
                let _ = self.flash.rename(&self.prev, &self.main);
            } else {
                // No good old `<name>`: without the new one, load falls
                // back to `<name>.prev` (or finds the first start).
                let _ = self.flash.remove(&self.main);
            }
            let _ = self.flash.sync_dir(&self.dir);
            return Err(StoreError::Io {
                step: "directory fsync",
                path: self.dir.clone(),
                source,
            });
        }
        Ok(())
    }

    /// Loads the newest good state.
    pub fn load<T: Stored>(&mut self) -> Result<Loaded<T>, StoreError> {
        let main = self.read_state::<T>(&self.main.clone())?;
        let main_problem = match main {
            Ok(Some(value)) => {
                // A tmp file beside a good state file is a save that never
                // completed: not a state.
                let _ = self.flash.remove(&self.tmp);
                return Ok(Loaded::Main(value));
            }
            Ok(None) => "missing".to_string(),
            Err(e) => e.to_string(),
        };
        if main_problem == "missing" {
            if let Some(value) = self.roll_forward::<T>()? {
                return Ok(Loaded::Main(value));
            }
        }
        let _ = self.flash.remove(&self.tmp);
        match self.read_state::<T>(&self.prev.clone())? {
            Ok(Some(value)) => Ok(Loaded::Recovered {
                value,
                problem: format!("{}: {main_problem}", self.main.display()),
            }),
            Ok(None) if main_problem == "missing" => Ok(Loaded::Fresh),
            Ok(None) => Err(self.no_good_copy(main_problem, "missing".into())),
            Err(prev) => Err(self.no_good_copy(main_problem, prev.to_string())),
        }
    }

    /// A crash between the two renames of a save leaves no `<name>`, the
    /// old state in `<name>.prev` and the new one, complete and synced, in
    /// `<name>.tmp`: the save is finished here (rename, directory fsync),
    /// so that a crash at that point loads the newest state rather than
    /// falling back. `None` when the tmp file is missing or not a good state.
    fn roll_forward<T: Stored>(&mut self) -> Result<Option<T>, StoreError> {
        let Ok(Some(value)) = self.read_state::<T>(&self.tmp.clone())? else {
            return Ok(None);
        };
        let renamed = self.flash.rename(&self.tmp, &self.main);
        if renamed.is_ok() {
            let _ = self.flash.sync_dir(&self.dir);
        }
        Ok(Some(value))
    }

    fn no_good_copy(&self, main: String, prev: String) -> StoreError {
        let name = self
            .main
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        StoreError::NoGoodCopy { name, main, prev }
    }

    /// `Ok(None)`: no such file; `Ok(Err)`: a file that is not a good state.
    fn read_state<T: Stored>(
        &mut self,
        path: &Path,
    ) -> Result<Result<Option<T>, FormatError>, StoreError> {
        let bytes = match self.flash.read(path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(Ok(None)),
            Err(source) => {
                return Err(StoreError::Io {
                    step: "read",
                    path: path.to_owned(),
                    source,
                })
            }
        };
        Ok(
            file_format::decode_any(&bytes).and_then(|(version, payload)| {
                if version == FORMAT_VERSION {
                    stored::decode_whole::<T>(payload).map(Some)
                } else {
                    T::upgrade(version, payload).map(Some)
                }
            }),
        )
    }
}
