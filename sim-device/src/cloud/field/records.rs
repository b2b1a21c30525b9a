//! The cloud's records between field-engineer runs: the accounts, sites,
//! invitations and domain registrations of [`CloudModel`], kept in
//! `cloud-records.bin` in the PKI directory.
//!
//! Each `sim-device` command is its own process, while the flows span
//! several (an installer invites, the owner registers and accepts later).
//! What only the cloud knows must therefore outlive a run; what the
//! devices hold is re-learned from their retained state reports anyway.
//! One run at a time: a run holds an exclusive lock on
//! `cloud-records.lock` from load to save, so two commands started
//! together cannot lose each other's changes. The file is written to a
//! temporary name, synced and renamed, so a crash leaves the old or the
//! new records, never a mix; a damaged file is refused with its path and
//! left as it is.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::super::model::CloudModel;

/// The records' file name in the PKI directory.
pub const RECORDS_FILE: &str = "cloud-records.bin";
const LOCK_FILE: &str = "cloud-records.lock";
/// Format tag and version: a file of another layout is refused, not
/// misread.
const MAGIC: &[u8; 8] = b"HCCLOUD1";

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("cloud records {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cloud records {path} are damaged or of another version ({detail}); \
         move the file away to start with empty records"
    )]
    Damaged { path: PathBuf, detail: String },
}

/// The records of one run, locked until dropped.
#[derive(Debug)]
pub struct Records {
    path: PathBuf,
    _lock: File,
}

impl Records {
    /// Locks the records of `pki_dir` (waiting for another run to finish)
    /// and loads them; empty records if there are none yet.
    pub fn open(pki_dir: &Path) -> Result<(Records, CloudModel), RecordsError> {
        let lock_path = pki_dir.join(LOCK_FILE);
        let io_error = |path: &Path| {
            let path = path.to_owned();
            move |source| RecordsError::Io { path, source }
        };
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        // SAFETY: flock on a descriptor this function owns; no memory is
        // shared with the kernel.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_error(&lock_path)(io::Error::last_os_error()));
        }
        let path = pki_dir.join(RECORDS_FILE);
        let model = match fs::read(&path) {
            Ok(bytes) => decode(&bytes).map_err(|detail| RecordsError::Damaged {
                path: path.clone(),
                detail,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => CloudModel::new(),
            Err(e) => return Err(io_error(&path)(e)),
        };
        Ok((Records { path, _lock: lock }, model))
    }

    /// Replaces the stored records with `model`.
    pub fn save(&self, model: &CloudModel) -> Result<(), RecordsError> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(
            postcard::to_stdvec(model).map_err(|e| RecordsError::Damaged {
                path: self.path.clone(),
                detail: e.to_string(),
            })?,
        );
        let tmp = self.path.with_extension("tmp");
        let io_error = |source| RecordsError::Io {
            path: tmp.clone(),
            source,
        };
        let mut file = File::create(&tmp).map_err(io_error)?;
        file.write_all(&bytes).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
        fs::rename(&tmp, &self.path).map_err(io_error)
    }
}

fn decode(bytes: &[u8]) -> Result<CloudModel, String> {
    let body = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| "no HCCLOUD1 header".to_owned())?;
    postcard::from_bytes(body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_run_and_a_damaged_file_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (records, mut model) = Records::open(dir.path()).unwrap();
            model
                .register_account("bob", Some("bob@example.com"), None, "EU")
                .unwrap();
            records.save(&model).unwrap();
        }
        let (records, model) = Records::open(dir.path()).unwrap();
        assert_eq!(
            model.find_account("bob@example.com").unwrap().user_name,
            "bob"
        );
        drop(records);

        let path = dir.path().join(RECORDS_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 3);
        fs::write(&path, &bytes).unwrap();
        let error = Records::open(dir.path()).unwrap_err();
        assert!(matches!(error, RecordsError::Damaged { .. }), "{error}");
        assert!(error.to_string().contains("cloud-records.bin"), "{error}");
        assert_eq!(fs::read(&path).unwrap(), bytes, "left as it was");
    }
}
