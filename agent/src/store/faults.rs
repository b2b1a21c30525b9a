//! A flash that fails on purpose: short writes, a full disk, failed fsyncs,
//! failed renames, or a "power cut" that stops every operation after the
//! n-th. Used by the store's tests, the fault suite and the simulator.

use std::io;
use std::path::Path;

use super::flash::{Flash, RealFlash};

/// What goes wrong, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next write stores only half the bytes, then fails.
    ShortWrite,
    /// The next write fails with "no space left on device" after half.
    DiskFull,
    /// The next file fsync fails.
    FailedSync,
    /// The next rename fails.
    FailedRename,
    /// The next directory fsync fails.
    FailedDirSync,
    /// Every operation after the first `n` fails, as if power was cut:
    /// nothing more reaches the disk.
    PowerCutAfter(usize),
}

/// The real file system with at most one armed fault; nothing goes wrong
/// until `arm` is called.
#[derive(Debug, Default)]
pub struct FaultyFlash {
    inner: RealFlash,
    fault: Option<Fault>,
    operations: usize,
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected fault: {what}"))
}

impl FaultyFlash {
    /// A flash with no fault armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms a fault; one-shot faults disarm once they fire.
    pub fn arm(&mut self, fault: Fault) {
        self.fault = Some(fault);
        self.operations = 0;
    }

    /// Takes back the armed fault, if any: every operation works again
    /// (the power is back).
    pub fn disarm(&mut self) {
        self.fault = None;
    }

    /// One file-system step: the power may be cut before it, and `fault`,
    /// when armed, makes it fail as `what`.
    fn step(&mut self, fault: Fault, what: &str) -> io::Result<()> {
        self.power_cut()?;
        if self.take(fault) {
            return Err(injected(what));
        }
        Ok(())
    }

    fn power_cut(&mut self) -> io::Result<()> {
        self.operations += 1;
        match self.fault {
            Some(Fault::PowerCutAfter(n)) if self.operations > n => Err(injected("power cut")),
            _ => Ok(()),
        }
    }

    fn take(&mut self, fault: Fault) -> bool {
        if self.fault == Some(fault) {
            self.fault = None;
            true
        } else {
            false
        }
    }
}

impl Flash for FaultyFlash {
    fn write_new(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.power_cut()?;
        if self.take(Fault::ShortWrite) {
            self.inner.write_new(path, &bytes[..bytes.len() / 2])?;
            return Err(injected("short write"));
        }
        if self.take(Fault::DiskFull) {
            self.inner.write_new(path, &bytes[..bytes.len() / 2])?;
            return Err(io::Error::from_raw_os_error(28));
        }
        self.inner.write_new(path, bytes)
    }

    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        self.step(Fault::FailedSync, "fsync")?;
        self.inner.sync_file(path)
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.step(Fault::FailedRename, "rename")?;
        self.inner.rename(from, to)
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        self.step(Fault::FailedDirSync, "directory fsync")?;
        self.inner.sync_dir(dir)
    }

    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        self.inner.read(path)
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.power_cut()?;
        self.inner.remove(path)
    }
}
