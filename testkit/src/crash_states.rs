//! A crash-consistency checker for the state store, in the manner of the
//! ALICE and CrashMonkey studies: record the file-system operations real
//! saves make ([`RecordingFlash`]), then rebuild every state a POSIX file
//! system may leave after a power cut at each point of that log
//! ([`crash_states`]), where
//! - file data written since the file's last fsync may be lost, kept, or
//!   torn (a prefix of it, at [`TORN_STEP`]-byte steps, survives);
//! - directory changes (create, rename, remove) since the directory's last
//!   fsync may each be kept or lost, in any combination (so two renames may
//!   persist out of order);
//! - nothing synced is ever lost.
//!
//! Each crash state is an in-memory file system ([`MemFlash`]) the real
//! `StateStore::load` can read.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use hc_agent::store::Flash;

/// Granularity of a torn write: every prefix of the unsynced data at a
/// multiple of this many bytes is a possible crash state (a 512-byte
/// sector, halved so a small state file still tears in several places).
pub const TORN_STEP: usize = 256;

/// One file-system operation of a save or a load, in the order made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or truncate `path` and write `bytes`.
    Write(PathBuf, Vec<u8>),
    /// fsync of `path`.
    SyncFile(PathBuf),
    /// rename(from, to).
    Rename(PathBuf, PathBuf),
    /// fsync of the directory.
    SyncDir,
    /// unlink(path).
    Remove(PathBuf),
    /// Not a file-system operation: the caller acknowledged state number
    /// `n` (its save returned). Every crash after this mark must load state
    /// `n` or a newer one.
    Acked(usize),
}

/// A file system in memory: names to inodes, inodes to bytes. Serves as a
/// crash state for `StateStore::load`, and as the live view while recording.
#[derive(Debug, Clone, Default)]
pub struct MemFlash {
    names: BTreeMap<PathBuf, usize>,
    inodes: Vec<Vec<u8>>,
}

impl Flash for MemFlash {
    fn write_new(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        match self.names.get(path) {
            Some(&inode) => self.inodes[inode] = bytes.to_vec(),
            None => {
                self.inodes.push(bytes.to_vec());
                self.names.insert(path.to_owned(), self.inodes.len() - 1);
            }
        }
        Ok(())
    }

    fn sync_file(&mut self, _: &Path) -> io::Result<()> {
        Ok(())
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let inode = self.names.remove(from).ok_or(io::ErrorKind::NotFound)?;
        self.names.insert(to.to_owned(), inode);
        Ok(())
    }

    fn sync_dir(&mut self, _: &Path) -> io::Result<()> {
        Ok(())
    }

    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        Ok(self.names.get(path).map(|&i| self.inodes[i].clone()))
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.names.remove(path);
        Ok(())
    }
}

/// A flash that does what a `MemFlash` does and records every operation.
#[derive(Debug, Default)]
pub struct RecordingFlash {
    /// The live file system, as the running process sees it.
    pub live: MemFlash,
    /// Every operation so far.
    pub ops: Vec<Op>,
    /// Record fsyncs as if they were never made: what a store whose
    /// `sync_file` is a no-op would leave.
    pub drop_file_syncs: bool,
    /// The same for directory fsyncs.
    pub drop_dir_syncs: bool,
}

impl Flash for RecordingFlash {
    fn write_new(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.ops.push(Op::Write(path.to_owned(), bytes.to_vec()));
        self.live.write_new(path, bytes)
    }

    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        if !self.drop_file_syncs {
            self.ops.push(Op::SyncFile(path.to_owned()));
        }
        Ok(())
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.live.rename(from, to)?;
        self.ops.push(Op::Rename(from.to_owned(), to.to_owned()));
        Ok(())
    }

    fn sync_dir(&mut self, _: &Path) -> io::Result<()> {
        if !self.drop_dir_syncs {
            self.ops.push(Op::SyncDir);
        }
        Ok(())
    }

    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        self.live.read(path)
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        if self.live.names.contains_key(path) {
            self.ops.push(Op::Remove(path.to_owned()));
        }
        self.live.remove(path)
    }
}

/// A directory change not yet made durable by a directory fsync.
#[derive(Debug, Clone)]
enum DirChange {
    Link(PathBuf, usize),
    Rename(PathBuf, PathBuf),
    Unlink(PathBuf),
}

/// The durable and the volatile view of the disk while replaying a log.
#[derive(Debug, Clone, Default)]
struct Replay {
    /// Directory entries as of the last directory fsync.
    durable_names: BTreeMap<PathBuf, usize>,
    /// Changes since, in order.
    pending: Vec<DirChange>,
    /// The live view (names and current data).
    live: MemFlash,
    /// Each inode's data as of its last fsync (empty for a new file).
    durable_data: Vec<Vec<u8>>,
}

impl Replay {
    fn step(&mut self, op: &Op) {
        match op {
            Op::Write(path, bytes) => {
                if !self.live.names.contains_key(path) {
                    self.durable_data.push(Vec::new());
                    let inode = self.live.inodes.len();
                    self.pending.push(DirChange::Link(path.clone(), inode));
                }
                let _ = self.live.write_new(path, bytes);
            }
            Op::SyncFile(path) => {
                if let Some(&inode) = self.live.names.get(path) {
                    self.durable_data[inode] = self.live.inodes[inode].clone();
                }
            }
            Op::Rename(from, to) => {
                let _ = self.live.rename(from, to);
                self.pending
                    .push(DirChange::Rename(from.clone(), to.clone()));
            }
            Op::SyncDir => {
                self.durable_names = self.live.names.clone();
                self.pending.clear();
            }
            Op::Remove(path) => {
                let _ = self.live.remove(path);
                self.pending.push(DirChange::Unlink(path.clone()));
            }
            Op::Acked(_) => {}
        }
    }

    /// Every crash state of this moment, handed to `visit` one by one.
    fn crash_states(&self, visit: &mut dyn FnMut(MemFlash)) {
        // The pending changes are few (a save makes at most 3): every subset.
        let n = self.pending.len().min(12);
        for mask in 0u32..(1 << n) {
            let mut names = self.durable_names.clone();
            for (i, change) in self.pending.iter().enumerate().take(n) {
                if mask & (1 << i) == 0 {
                    continue;
                }
                match change {
                    DirChange::Link(path, inode) => {
                        names.insert(path.clone(), *inode);
                    }
                    DirChange::Rename(from, to) => {
                        if let Some(inode) = names.remove(from) {
                            names.insert(to.clone(), inode);
                        }
                    }
                    DirChange::Unlink(path) => {
                        names.remove(path);
                    }
                }
            }
            self.with_data_variants(names, visit);
        }
    }

    /// For the files reachable in `names` whose data is not synced, every
    /// combination of lost, kept and torn data. Only reachable files are
    /// kept, renumbered.
    fn with_data_variants(&self, names: BTreeMap<PathBuf, usize>, visit: &mut dyn FnMut(MemFlash)) {
        let mut reachable: Vec<usize> = names.values().copied().collect();
        reachable.sort_unstable();
        reachable.dedup();
        let compact = MemFlash {
            names: names
                .into_iter()
                .map(|(path, inode)| (path, reachable.binary_search(&inode).unwrap_or(0)))
                .collect(),
            inodes: reachable
                .iter()
                .map(|&i| self.durable_data[i].clone())
                .collect(),
        };
        let choices: Vec<Vec<Vec<u8>>> = reachable
            .iter()
            .map(|&i| {
                let (live, durable) = (&self.live.inodes[i], &self.durable_data[i]);
                if live == durable {
                    vec![durable.clone()]
                } else {
                    data_variants(durable, live)
                }
            })
            .collect();
        let mut pick = vec![0usize; choices.len()];
        loop {
            let mut fs = compact.clone();
            for (slot, (options, &k)) in choices.iter().zip(&pick).enumerate() {
                fs.inodes[slot] = options[k].clone();
            }
            visit(fs);
            // The next combination, odometer style.
            let mut slot = 0;
            loop {
                if slot == pick.len() {
                    return;
                }
                pick[slot] += 1;
                if pick[slot] < choices[slot].len() {
                    break;
                }
                pick[slot] = 0;
                slot += 1;
            }
        }
    }
}

/// Most blocks of one unsynced write whose persistence is varied
/// independently (2^this variants); a longer write is cut into this many
/// groups of blocks.
pub const MAX_TORN_BLOCKS: usize = 10;

/// What an unsynced write of `live` over `durable` may leave: the old data
/// (the size did not reach the disk either), every prefix at a
/// `TORN_STEP` boundary (a torn append), and at the new size every
/// combination of blocks written or not (writes reordered; an unwritten
/// block reads as the old data or zeros).
fn data_variants(durable: &[u8], live: &[u8]) -> Vec<Vec<u8>> {
    let mut variants = vec![durable.to_vec()];
    variants.extend(
        (1..)
            .map(|k| k * TORN_STEP)
            .take_while(|&l| l < live.len())
            .map(|l| live[..l].to_vec()),
    );
    let blocks = live.len().div_ceil(TORN_STEP).max(1);
    let per_group = blocks.div_ceil(MAX_TORN_BLOCKS) * TORN_STEP;
    let groups = live.len().div_ceil(per_group).max(1);
    for mask in 0u32..(1 << groups) {
        let mut bytes = vec![0; live.len()];
        for (g, chunk) in bytes.chunks_mut(per_group).enumerate() {
            let start = g * per_group;
            let source = if mask & (1 << g) != 0 { live } else { durable };
            for (i, byte) in chunk.iter_mut().enumerate() {
                *byte = source.get(start + i).copied().unwrap_or(0);
            }
        }
        variants.push(bytes);
    }
    variants
}

/// One crash state with where it was taken.
pub struct CrashState {
    /// How many operations of the log had been made.
    pub after_ops: usize,
    /// The newest state acknowledged before this point, if any.
    pub acked: Option<usize>,
    /// The disk after the power cut.
    pub disk: MemFlash,
}

/// Every crash state of the log, handed to `visit`: at each point between
/// two operations (and after the last), every disk a power cut may leave.
pub fn for_each_crash_state(ops: &[Op], mut visit: impl FnMut(CrashState)) {
    let mut replay = Replay::default();
    let mut acked = None;
    for point in 0..=ops.len() {
        // Right before an acknowledgement the disk is the one right after
        // it, where the check is stricter: take it there only.
        if !matches!(ops.get(point), Some(Op::Acked(_))) {
            replay.crash_states(&mut |disk| {
                visit(CrashState {
                    after_ops: point,
                    acked,
                    disk,
                })
            });
        }
        if let Some(op) = ops.get(point) {
            if let Op::Acked(n) = op {
                acked = Some(*n);
            }
            replay.step(op);
        }
    }
}
