//! A FUSE file system that loses, at a simulated power cut, everything not
//! yet made durable, as flash under a POSIX file system may (issue 13): the
//! real agent binary keeps its state directory on it and the tests cut the
//! power under it.
//!
//! The durable contents live in a backing directory (the "flash"). On top
//! of them the mounted file system keeps a volatile layer in memory, the
//! page cache that a power cut empties:
//! - file data written since the file's last fsync is volatile; `fsync` of
//!   the file makes it durable;
//! - directory changes (create, rename, unlink, mkdir, rmdir) are volatile
//!   until the directory is fsynced. A rename is one change, so it is kept
//!   or lost whole (ext4 journals it in one transaction).
//!
//! Every durable change is written through to the backing directory at
//! once. [`PowerCutFs::power_off`] (or a cut armed to fall before the n-th
//! change, [`PowerCutFs::arm`]) discards the volatile layer, writes what
//! survives to the backing directory and fails every later request with
//! `EIO`. A cut may keep some pending directory changes ([`Keep`]): none,
//! as POSIX promises; the oldest few, as an ext4 journal commit that came
//! before the cut would; or any of them, as a file system that writes its
//! metadata back in any order may.
//! [`PowerCutFs::power_on`] unmounts and mounts a fresh file system over
//! the backing directory: the reboot. Nothing of the old mount survives it,
//! not even the kernel's caches (files are opened with direct I/O and names
//! are never cached).
//!
//! [`Syncs`] can make the file system ignore file or directory fsyncs, so a
//! test can show that its check fails on a store that does not sync.
//!
//! Mounting needs root and `/dev/fuse`; [`mount_or_skip`] says why a test is
//! skipped when either is missing, and fails it when `CI` is set.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    AccessFlags, BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem,
    FopenFlags, Generation, INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};

/// Nothing about names or attributes is cached in the kernel: every lookup
/// asks the file system, so what it holds is what the agent sees.
const TTL: Duration = Duration::ZERO;

/// Which fsyncs the file system honours. The default honours both, as
/// flash under a correct file system does; ignoring one is a store that
/// forgot it, for showing that a check can fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Syncs {
    /// `fsync` of a file does nothing: its data stays volatile.
    pub ignore_file_fsync: bool,
    /// `fsync` of a directory does nothing: its entries stay volatile.
    pub ignore_dir_fsync: bool,
}

/// Which directory changes not yet made durable a cut keeps; the others
/// are lost. Unsynced file data is always lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// None: only what was fsynced survives.
    Nothing,
    /// The `n` oldest, in order: a journal committed them before the cut.
    Oldest(usize),
    /// Change `i` (oldest first) if bit `i % 64` of the mask is set: a
    /// file system that writes its metadata back in any order.
    Any(u64),
}

impl Keep {
    fn keeps(self, i: usize) -> bool {
        match self {
            Keep::Nothing => false,
            Keep::Oldest(n) => i < n,
            Keep::Any(mask) => mask & (1 << (i % 64)) != 0,
        }
    }
}

/// What one power cut did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cut {
    /// Pending directory changes discarded.
    pub dir_changes_lost: usize,
    /// Pending directory changes kept (the journal committed them).
    pub dir_changes_kept: usize,
    /// Files whose data written since their last fsync was discarded.
    pub files_with_data_lost: usize,
    /// The names (in their directories) the discarded changes touched:
    /// entries created, renamed or removed, and files whose data was lost.
    pub lost: BTreeSet<OsString>,
    /// Counted changes (see [`PowerCutFs::changes`]) before the cut, since
    /// the last [`PowerCutFs::arm`] or mount.
    pub after_changes: u64,
}

/// The durable contents of a tree, as the backing directory holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Image {
    File(Vec<u8>),
    Dir(BTreeMap<OsString, Image>),
}

#[derive(Debug)]
enum Node {
    File {
        /// What a read returns.
        data: Vec<u8>,
        /// What survives a cut.
        durable: Vec<u8>,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
        durable: BTreeMap<OsString, u64>,
    },
}

#[derive(Debug)]
struct Inode {
    node: Node,
    perm: u16,
    mtime: SystemTime,
}

/// One directory entry set (`Some`) or removed (`None`) by a change.
#[derive(Debug, Clone)]
struct Edit {
    dir: u64,
    name: OsString,
    to: Option<u64>,
}

#[derive(Debug)]
struct Disk {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    syncs: Syncs,
    backing: PathBuf,
    /// What the backing directory holds now.
    persisted: Option<Image>,
    /// Directory changes not yet durable, oldest first; each is applied
    /// whole (a rename touches two entries).
    pending: Vec<Vec<Edit>>,
    /// False once the power is cut: every request fails with EIO.
    on: bool,
    /// Changes counted since the last arming (or the mount), and when the
    /// first and the last of them came.
    changes: u64,
    first_change: Option<Instant>,
    last_change: Option<Instant>,
    /// A cut armed to fall before change number `.0` (counted from 0),
    /// keeping `.1` of the pending directory changes.
    armed: Option<(u64, Keep)>,
    cut: Option<Cut>,
    /// Why writing to the backing directory failed, if it did.
    error: Option<String>,
}

type Answer<T> = Result<T, Errno>;

impl Disk {
    fn load(backing: &Path, syncs: Syncs) -> io::Result<Disk> {
        let mut disk = Disk {
            inodes: HashMap::new(),
            next_ino: INodeNo::ROOT.0,
            syncs,
            backing: backing.to_owned(),
            persisted: None,
            pending: Vec::new(),
            on: true,
            changes: 0,
            first_change: None,
            last_change: None,
            armed: None,
            cut: None,
            error: None,
        };
        std::fs::create_dir_all(backing)?;
        let image = read_image(backing)?;
        let root = disk.add_image(&image, 0o755);
        debug_assert_eq!(root, INodeNo::ROOT.0);
        disk.persisted = Some(image);
        Ok(disk)
    }

    fn insert_inode(&mut self, ino: u64, node: Node, perm: u16) {
        let inode = Inode {
            node,
            perm,
            mtime: SystemTime::now(),
        };
        self.inodes.insert(ino, inode);
    }

    fn add_image(&mut self, image: &Image, perm: u16) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        let node = match image {
            Image::File(bytes) => Node::File {
                data: bytes.clone(),
                durable: bytes.clone(),
            },
            Image::Dir(_) => Node::Dir {
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
            },
        };
        self.insert_inode(ino, node, perm);
        if let Image::Dir(children) = image {
            let mut entries = BTreeMap::new();
            for (name, child) in children {
                let perm = if matches!(child, Image::Dir(_)) {
                    0o755
                } else {
                    0o644
                };
                entries.insert(name.clone(), self.add_image(child, perm));
            }
            if let Some(Inode {
                node:
                    Node::Dir {
                        entries: e,
                        durable,
                    },
                ..
            }) = self.inodes.get_mut(&ino)
            {
                *durable = entries.clone();
                *e = entries;
            }
        }
        ino
    }

    /// Every request passes here first: none once the power is off, and a
    /// `change` (anything a power cut may fall before) may be the one an
    /// armed cut falls before.
    fn enter(&mut self, change: bool) -> Answer<()> {
        if !self.on {
            return Err(Errno::EIO);
        }
        if change {
            if let Some((at, keep)) = self.armed {
                if self.changes >= at {
                    self.cut_power(keep);
                    return Err(Errno::EIO);
                }
            }
            self.changes += 1;
            let now = Instant::now();
            self.first_change.get_or_insert(now);
            self.last_change = Some(now);
        }
        Ok(())
    }

    fn cut_power(&mut self, keep: Keep) -> Cut {
        if let Some(cut) = &self.cut {
            return cut.clone();
        }
        let unsynced: Vec<u64> = self
            .inodes
            .iter()
            .filter(|(_, i)| matches!(&i.node, Node::File { data, durable } if data != durable))
            .map(|(ino, _)| *ino)
            .collect();
        let (kept, discarded): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .enumerate()
            .partition(|(i, _)| keep.keeps(*i));
        let mut lost: BTreeSet<OsString> = discarded
            .iter()
            .flat_map(|(_, change)| change.iter().map(|edit| edit.name.clone()))
            .collect();
        for inode in self.inodes.values() {
            if let Node::Dir { entries, .. } = &inode.node {
                let names = entries.iter().filter(|(_, ino)| unsynced.contains(ino));
                lost.extend(names.map(|(name, _)| name.clone()));
            }
        }
        let cut = Cut {
            dir_changes_kept: kept.len(),
            dir_changes_lost: discarded.len(),
            files_with_data_lost: unsynced.len(),
            lost,
            after_changes: self.changes,
        };
        let kept: Vec<Edit> = kept.into_iter().flat_map(|(_, change)| change).collect();
        self.apply_durably(&kept);
        self.persist();
        self.on = false;
        self.armed = None;
        self.cut = Some(cut.clone());
        cut
    }

    /// Makes directory edits durable.
    fn apply_durably(&mut self, edits: &[Edit]) {
        for edit in edits {
            if let Some(Inode {
                node: Node::Dir { durable, .. },
                ..
            }) = self.inodes.get_mut(&edit.dir)
            {
                match edit.to {
                    Some(ino) => durable.insert(edit.name.clone(), ino),
                    None => durable.remove(&edit.name),
                };
            }
        }
    }

    /// The durable tree under `ino`; a directory reached twice (possible
    /// only through durable entries of moved directories) is left out the
    /// second time.
    fn image(&self, ino: u64, seen: &mut Vec<u64>) -> Image {
        seen.push(ino);
        match self.inodes.get(&ino).map(|i| &i.node) {
            Some(Node::File { durable, .. }) => Image::File(durable.clone()),
            Some(Node::Dir { durable, .. }) => {
                let mut children = BTreeMap::new();
                for (name, child) in durable {
                    if seen.contains(child) && self.is_dir(*child) {
                        continue;
                    }
                    children.insert(name.clone(), self.image(*child, seen));
                }
                Image::Dir(children)
            }
            None => Image::File(Vec::new()),
        }
    }

    /// Writes the durable tree to the backing directory, if it changed.
    fn persist(&mut self) {
        let image = self.image(INodeNo::ROOT.0, &mut Vec::new());
        if self.persisted.as_ref() == Some(&image) {
            return;
        }
        let written = std::fs::remove_dir_all(&self.backing)
            .or_else(|e| match e.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
            .and_then(|()| write_image(&self.backing, &image));
        match written {
            Ok(()) => self.persisted = Some(image),
            Err(e) => {
                self.error
                    .get_or_insert_with(|| format!("{}: {e}", self.backing.display()));
            }
        }
    }

    fn is_dir(&self, ino: u64) -> bool {
        matches!(
            self.inodes.get(&ino).map(|i| &i.node),
            Some(Node::Dir { .. })
        )
    }

    fn attr(&self, ino: u64) -> Answer<FileAttr> {
        let inode = self.inodes.get(&ino).ok_or(Errno::ENOENT)?;
        let (kind, size, nlink) = match &inode.node {
            Node::File { data, .. } => (FileType::RegularFile, data.len() as u64, 1),
            Node::Dir { entries, .. } => (FileType::Directory, entries.len() as u64, 2),
        };
        // SAFETY: getuid and getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: inode.mtime,
            mtime: inode.mtime,
            ctime: inode.mtime,
            crtime: inode.mtime,
            kind,
            perm: inode.perm,
            nlink,
            uid,
            gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn entries(&self, dir: u64) -> Answer<&BTreeMap<OsString, u64>> {
        match self.inodes.get(&dir).map(|i| &i.node) {
            Some(Node::Dir { entries, .. }) => Ok(entries),
            Some(Node::File { .. }) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> Answer<u64> {
        self.entries(parent)?
            .get(name)
            .copied()
            .ok_or(Errno::ENOENT)
    }

    /// Sets or removes entries, in memory now and durably at the next
    /// fsync of their directories, as one change.
    fn change(&mut self, edits: Vec<Edit>) {
        for edit in &edits {
            if let Some(Inode {
                node: Node::Dir { entries, .. },
                mtime,
                ..
            }) = self.inodes.get_mut(&edit.dir)
            {
                match edit.to {
                    Some(ino) => entries.insert(edit.name.clone(), ino),
                    None => entries.remove(&edit.name),
                };
                *mtime = SystemTime::now();
            }
        }
        self.pending.push(edits);
    }

    fn new_node(&mut self, parent: u64, name: &OsStr, node: Node, perm: u16) -> Answer<u64> {
        self.enter(true)?;
        if self.entries(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.insert_inode(ino, node, perm);
        self.change(vec![Edit {
            dir: parent,
            name: name.to_owned(),
            to: Some(ino),
        }]);
        Ok(ino)
    }

    fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Answer<()> {
        self.enter(true)?;
        let ino = self.lookup(parent, name)?;
        match (&self.inodes[&ino].node, dir) {
            (Node::Dir { .. }, false) => return Err(Errno::EISDIR),
            (Node::File { .. }, true) => return Err(Errno::ENOTDIR),
            (Node::Dir { entries, .. }, true) if !entries.is_empty() => {
                return Err(Errno::ENOTEMPTY)
            }
            _ => {}
        }
        self.change(vec![Edit {
            dir: parent,
            name: name.to_owned(),
            to: None,
        }]);
        Ok(())
    }

    fn rename(&mut self, from: (u64, &OsStr), to: (u64, &OsStr)) -> Answer<()> {
        self.enter(true)?;
        let ino = self.lookup(from.0, from.1)?;
        self.entries(to.0)?;
        if let Ok(target) = self.lookup(to.0, to.1) {
            if target == ino {
                return Ok(());
            }
            match (&self.inodes[&ino].node, &self.inodes[&target].node) {
                (Node::File { .. }, Node::Dir { .. }) => return Err(Errno::EISDIR),
                (Node::Dir { .. }, Node::File { .. }) => return Err(Errno::ENOTDIR),
                (Node::Dir { .. }, Node::Dir { entries, .. }) if !entries.is_empty() => {
                    return Err(Errno::ENOTEMPTY)
                }
                _ => {}
            }
        }
        self.change(vec![
            Edit {
                dir: from.0,
                name: from.1.to_owned(),
                to: None,
            },
            Edit {
                dir: to.0,
                name: to.1.to_owned(),
                to: Some(ino),
            },
        ]);
        Ok(())
    }

    fn file(&mut self, ino: u64) -> Answer<&mut Vec<u8>> {
        match self.inodes.get_mut(&ino) {
            Some(Inode {
                node: Node::File { data, .. },
                mtime,
                ..
            }) => {
                *mtime = SystemTime::now();
                Ok(data)
            }
            Some(_) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Answer<u32> {
        self.enter(true)?;
        let data = self.file(ino)?;
        let start = usize::try_from(offset).map_err(|_| Errno::EFBIG)?;
        let end = start.checked_add(bytes.len()).ok_or(Errno::EFBIG)?;
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(bytes);
        u32::try_from(bytes.len()).map_err(|_| Errno::EFBIG)
    }

    fn truncate(&mut self, ino: u64, size: u64) -> Answer<()> {
        self.enter(true)?;
        let size = usize::try_from(size).map_err(|_| Errno::EFBIG)?;
        self.file(ino)?.resize(size, 0);
        Ok(())
    }

    fn fsync_file(&mut self, ino: u64) -> Answer<()> {
        self.enter(true)?;
        if self.syncs.ignore_file_fsync {
            return Ok(());
        }
        match self.inodes.get_mut(&ino).map(|i| &mut i.node) {
            Some(Node::File { data, durable }) => *durable = data.clone(),
            Some(Node::Dir { .. }) => return self.sync_dir(ino),
            None => return Err(Errno::ENOENT),
        }
        self.persist();
        Ok(())
    }

    fn fsync_dir(&mut self, ino: u64) -> Answer<()> {
        self.enter(true)?;
        if self.syncs.ignore_dir_fsync {
            return Ok(());
        }
        self.sync_dir(ino)
    }

    /// Makes every pending edit of directory `dir` durable; a rename
    /// between two directories stays pending for the other one.
    fn sync_dir(&mut self, dir: u64) -> Answer<()> {
        self.entries(dir)?;
        let mut done: Vec<Edit> = Vec::new();
        for change in &mut self.pending {
            let (mine, others): (Vec<Edit>, Vec<Edit>) =
                change.drain(..).partition(|e| e.dir == dir);
            done.extend(mine);
            *change = others;
        }
        self.pending.retain(|c| !c.is_empty());
        self.apply_durably(&done);
        self.persist();
        Ok(())
    }

    fn read(&mut self, ino: u64, offset: u64, size: u32) -> Answer<Vec<u8>> {
        self.enter(false)?;
        let data = match self.inodes.get(&ino).map(|i| &i.node) {
            Some(Node::File { data, .. }) => data,
            Some(_) => return Err(Errno::EISDIR),
            None => return Err(Errno::ENOENT),
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = start.saturating_add(size as usize).min(data.len());
        Ok(data[start..end].to_vec())
    }
}

fn read_image(path: &Path) -> io::Result<Image> {
    if !std::fs::metadata(path)?.is_dir() {
        return Ok(Image::File(std::fs::read(path)?));
    }
    let mut children = BTreeMap::new();
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        children.insert(entry.file_name(), read_image(&entry.path())?);
    }
    Ok(Image::Dir(children))
}

fn write_image(path: &Path, image: &Image) -> io::Result<()> {
    match image {
        Image::File(bytes) => std::fs::write(path, bytes),
        Image::Dir(children) => {
            std::fs::create_dir_all(path)?;
            for (name, child) in children {
                write_image(&path.join(name), child)?;
            }
            Ok(())
        }
    }
}

/// The FUSE request handlers over the shared [`Disk`].
struct Handlers(Arc<Mutex<Disk>>);

impl Handlers {
    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates `node` under `parent` with the permission bits of `mode`.
    fn make_node(&self, parent: INodeNo, name: &OsStr, node: Node, mode: u32, reply: ReplyEntry) {
        let answer = self
            .disk()
            .new_node(parent.0, name, node, (mode & 0o7777) as u16);
        self.entry(answer, reply);
    }

    fn entry(&self, answer: Answer<u64>, reply: ReplyEntry) {
        let disk = self.disk();
        match answer.and_then(|ino| disk.attr(ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }
}

fn empty(answer: Answer<()>, reply: ReplyEmpty) {
    match answer {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for Handlers {
    fn lookup(&self, _: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let answer = {
            let mut disk = self.disk();
            disk.enter(false).and_then(|()| disk.lookup(parent.0, name))
        };
        self.entry(answer, reply);
    }

    fn getattr(&self, _: &Request, ino: INodeNo, _: Option<FileHandle>, reply: ReplyAttr) {
        let mut disk = self.disk();
        match disk.enter(false).and_then(|()| disk.attr(ino.0)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut disk = self.disk();
        let mut answer = disk.enter(false);
        if let (Ok(()), Some(size)) = (answer, size) {
            answer = disk.truncate(ino.0, size);
        }
        if let (Ok(()), Some(mode)) = (answer, mode) {
            match disk.inodes.get_mut(&ino.0) {
                Some(inode) => inode.perm = (mode & 0o7777) as u16,
                None => answer = Err(Errno::ENOENT),
            }
        }
        match answer.and_then(|()| disk.attr(ino.0)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let node = Node::File {
            data: Vec::new(),
            durable: Vec::new(),
        };
        self.make_node(parent, name, node, mode & !umask, reply);
    }

    fn mkdir(
        &self,
        _: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let node = Node::Dir {
            entries: BTreeMap::new(),
            durable: BTreeMap::new(),
        };
        self.make_node(parent, name, node, mode & !umask, reply);
    }

    fn unlink(&self, _: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(self.disk().remove(parent.0, name, false), reply);
    }

    fn rmdir(&self, _: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(self.disk().remove(parent.0, name, true), reply);
    }

    fn rename(
        &self,
        _: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !flags.is_empty() {
            return reply.error(Errno::EINVAL);
        }
        empty(
            self.disk().rename((parent.0, name), (newparent.0, newname)),
            reply,
        );
    }

    fn open(&self, _: &Request, ino: INodeNo, _: OpenFlags, reply: ReplyOpen) {
        let mut disk = self.disk();
        match disk.enter(false).and_then(|()| disk.attr(ino.0)) {
            // Direct I/O: every read and write reaches the file system, and
            // nothing of a file is served from the kernel's page cache.
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let node = Node::File {
            data: Vec::new(),
            durable: Vec::new(),
        };
        let mut disk = self.disk();
        let perm = (mode & !umask & 0o7777) as u16;
        match disk
            .new_node(parent.0, name, node, perm)
            .and_then(|ino| disk.attr(ino))
        {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _: &Request,
        ino: INodeNo,
        _: FileHandle,
        offset: u64,
        size: u32,
        _: OpenFlags,
        _: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.disk().read(ino.0, offset, size) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _: &Request,
        ino: INodeNo,
        _: FileHandle,
        offset: u64,
        data: &[u8],
        _: WriteFlags,
        _: OpenFlags,
        _: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.disk().write(ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _: &Request, _: INodeNo, _: FileHandle, _: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(&self, _: &Request, ino: INodeNo, _: FileHandle, _: bool, reply: ReplyEmpty) {
        empty(self.disk().fsync_file(ino.0), reply);
    }

    fn readdir(
        &self,
        _: &Request,
        ino: INodeNo,
        _: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut disk = self.disk();
        let listing = disk.enter(false).and_then(|()| {
            let mut listing = vec![
                (ino.0, FileType::Directory, OsString::from(".")),
                (ino.0, FileType::Directory, OsString::from("..")),
            ];
            for (name, child) in disk.entries(ino.0)? {
                let kind = if disk.is_dir(*child) {
                    FileType::Directory
                } else {
                    FileType::RegularFile
                };
                listing.push((*child, kind, name.clone()));
            }
            Ok(listing)
        });
        match listing {
            Ok(listing) => {
                let skip = usize::try_from(offset).unwrap_or(usize::MAX);
                for (i, (child, kind, name)) in listing.into_iter().enumerate().skip(skip) {
                    if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(&self, _: &Request, ino: INodeNo, _: FileHandle, _: bool, reply: ReplyEmpty) {
        empty(self.disk().fsync_dir(ino.0), reply);
    }

    fn access(&self, _: &Request, _: INodeNo, _: AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}

/// The mounted file system and its power switch.
pub struct PowerCutFs {
    backing: PathBuf,
    mountpoint: PathBuf,
    syncs: Syncs,
    disk: Arc<Mutex<Disk>>,
    session: Option<BackgroundSession>,
}

impl PowerCutFs {
    /// Mounts at `mountpoint` a file system whose durable contents are
    /// those of `backing` (created if missing).
    pub fn mount(backing: &Path, mountpoint: &Path, syncs: Syncs) -> io::Result<PowerCutFs> {
        std::fs::create_dir_all(mountpoint)?;
        let disk = Arc::new(Mutex::new(Disk::load(backing, syncs)?));
        let session = spawn(&disk, mountpoint)?;
        Ok(PowerCutFs {
            backing: backing.to_owned(),
            mountpoint: mountpoint.to_owned(),
            syncs,
            disk,
            session: Some(session),
        })
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.disk
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where the file system is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The backing directory: after a cut, exactly what survived it.
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// Cuts the power right before change number `after` from now
    /// (0: the next one), keeping `keep` of the pending directory
    /// changes. Changes are creates, writes, truncations, renames, unlinks,
    /// directory creations and removals, and fsyncs of files and
    /// directories: every point between two steps of a save.
    pub fn arm(&self, after: u64, keep: Keep) {
        let mut disk = self.disk();
        disk.changes = 0;
        disk.first_change = None;
        disk.last_change = None;
        disk.armed = Some((after, keep));
    }

    /// Counts changes from now on without cutting: [`PowerCutFs::arm`]
    /// for a cut that never falls.
    pub fn count(&self) {
        self.arm(u64::MAX, Keep::Nothing);
    }

    /// Changes counted since the last [`PowerCutFs::arm`] (or the mount).
    pub fn changes(&self) -> u64 {
        self.disk().changes
    }

    /// The time from the first to the last change counted since the last
    /// [`PowerCutFs::arm`]; `None` before the first.
    pub fn changes_took(&self) -> Option<Duration> {
        let disk = self.disk();
        Some(disk.last_change? - disk.first_change?)
    }

    /// True once the power is off (an armed cut fell, or
    /// [`PowerCutFs::power_off`]).
    pub fn is_off(&self) -> bool {
        !self.disk().on
    }

    /// Cuts the power now, keeping `keep` of the pending directory
    /// changes, unless an armed cut fell first: returns that cut then.
    /// Every request fails with EIO from here on.
    pub fn power_off(&self, keep: Keep) -> io::Result<Cut> {
        let mut disk = self.disk();
        let cut = disk.cut_power(keep);
        match &disk.error {
            Some(e) => Err(io::Error::other(e.clone())),
            None => Ok(cut),
        }
    }

    /// The reboot: cuts the power if it is still on (keeping nothing),
    /// unmounts, and mounts a new file system over what the backing
    /// directory holds.
    pub fn power_on(&mut self) -> io::Result<()> {
        self.power_off(Keep::Nothing)?;
        self.unmount()?;
        *self.disk() = Disk::load(&self.backing, self.syncs)?;
        self.session = Some(spawn(&self.disk, &self.mountpoint)?);
        Ok(())
    }

    fn unmount(&mut self) -> io::Result<()> {
        match self.session.take() {
            Some(session) => session.umount_and_join(),
            None => Ok(()),
        }
    }
}

impl Drop for PowerCutFs {
    fn drop(&mut self) {
        if self.unmount().is_err() {
            // Busy (a process still has a file open): detach it, so the
            // test's temporary directory can go.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
    }
}

fn spawn(disk: &Arc<Mutex<Disk>>, mountpoint: &Path) -> io::Result<BackgroundSession> {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("hc-power-cut".into()),
        MountOption::Subtype("power-cut".into()),
    ];
    fuser::spawn_mount(Handlers(disk.clone()), mountpoint, &config)
}

/// For tests: the file system mounted, or `None` after printing why `test`
/// is skipped (not root, no `/dev/fuse`, the mount refused). Panics instead
/// when the environment variable `CI` is set: there, a power-cut test that
/// cannot run is a failure, never a silent pass.
pub fn mount_or_skip(
    test: &str,
    backing: &Path,
    mountpoint: &Path,
    syncs: Syncs,
) -> Option<PowerCutFs> {
    // SAFETY: geteuid cannot fail and touches no memory.
    let why = if unsafe { libc::geteuid() } != 0 {
        "mounting a FUSE file system needs root".to_string()
    } else if !Path::new("/dev/fuse").exists() {
        "/dev/fuse is missing (the fuse kernel module; apt-get install fuse3)".to_string()
    } else {
        match PowerCutFs::mount(backing, mountpoint, syncs) {
            Ok(fs) => return Some(fs),
            Err(e) => format!(
                "cannot mount a FUSE file system at {}: {e}",
                mountpoint.display()
            ),
        }
    };
    crate::skip::unavailable(test, &why);
    None
}
