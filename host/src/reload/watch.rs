//! When hot reload reloads: the watch on the file of what a [`Served`] serves.
//!
//! The watcher is an inotify watch on the plugin file's directory, not on the file: cargo
//! replaces its output by unlinking and hard-linking, `mv` renames over it, editors and `install`
//! delete and recreate it, `cp` rewrites it in place. When `plugin=` (or `filter=`) names a
//! symlink, the directory of every link on the way and of the file it leads to are watched, and
//! the chain is followed again after each change (a re-pointed link). A watched directory that
//! is deleted or moved (`cargo clean`) is said on stderr and looked for every [`LOOK_AGAIN`]
//! until it exists again, then watched again (said too).
//!
//! A reload starts at the event that finishes a build ([`landing`]): a finished file renamed over
//! the name (`IN_MOVED_TO`: lld's output, which rustc links with, `mv`, the harness), linked there
//! (`IN_CREATE` of a hard link: cargo links `deps/libX.so` to `libX.so` once the linker is done; of
//! a symlink: `ln -sfn`), or the close of a write to it (`IN_CLOSE_WRITE`: `cp` over it, an editor,
//! GNU ld writing the output itself). A write's start and progress (`IN_CREATE` of a new file,
//! which is empty; `IN_MODIFY`; `IN_ATTRIB` while a write is under way) are waited out until its
//! end. A write whose end is never seen (a writer that keeps the file open, a lost event, a
//! directory watched again with the file already in it) is read once the name has been quiet for
//! [`NO_END_SEEN`]; an empty file is not read at all. One build's events come as a burst (cargo
//! unlinks then links, lld renames then closes, `install` closes then changes the mode): the events
//! already queued are taken together, those that come while the build is read and loaded are looked
//! at right after it, and the same bytes are not loaded twice (the current generation's, or the
//! build just refused). A half-written file is not read: its writer has not said it is done. One
//! read anyway (a writer quiet for longer than [`NO_END_SEEN`], two writers at once) is refused
//! when what the load needs of it is cut or torn (the load reads the file once and checks those
//! bytes), and the end of the write loads the whole build; but it may load, if that part is whole
//! already: the first half of a debug build holds all its code (the rest is debug information), and
//! the 150 ms debounce loaded such halves
//! (`a_half_written_build_is_never_loaded_and_the_finished_one_at_once`).
//!
//! Rejected:
//! * A fixed debounce, a reload once the directory had been quiet for 150 ms (what this did
//!   before): every reload waited for it, `cargo xtask bench --reload` measured 156 ms median
//!   from a rename to the swap and 162 ms to the first read on a new connection (now 6 and
//!   12), 150 ms of it the wait; and a writer that paused longer had its half-written file
//!   read, and loaded when its code was whole, then the finished file loaded again: two
//!   reloads for one build.
//! * Reading at every event (`IN_MODIFY` too): a `cp` or a linker writing in place would be
//!   read many times before it is done, each read refused or, when what it loads is already
//!   whole, loaded.
//! * Asking whether a writer still has the file open: a read lease (`F_SETLEASE`) is refused
//!   unless nbdkit's user owns the file or has `CAP_LEASE`, and a writer opening the file while
//!   it is held sends nbdkit `SIGIO`, which ends it unless handled; scanning `/proc/*/fd` needs
//!   the right to see other users' processes and costs a directory read per process; fanotify
//!   needs `CAP_SYS_ADMIN`.
//! * Polling the file until its size and time stop changing: the poll period and the stable
//!   window are latency again, and polling costs while nothing changes.
//! * A watch on the file itself: it is lost when the file is replaced (rename, unlink and link),
//!   which is how most builds land.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};

use super::{reload, retire_limit, say, Served};
use crate::failure::Failure;
use crate::image::Digest;
use crate::nbdkit_c;

/// How long a write whose end was not seen (no close, rename or link of the file) must have
/// been quiet before the file is read anyway.
pub const NO_END_SEEN: Duration = Duration::from_secs(1);

/// Checks the settings a watch will need, from `get_ready`: before nbdkit forks, so that a bad
/// one fails the start in one line on every nbdkit (after the fork, nbdkit 1.42's `--run` ends
/// with its command's status, hiding the failure), not at the first reload that waits.
pub fn check_settings() -> Result<(), Failure> {
    retire_limit()?;
    Ok(())
}

/// Starts watching the file of what `served` serves (from `.after_fork`: threads do not survive
/// nbdkit's fork).
pub fn start_watcher<S: Served>(served: &'static S) -> Result<(), Failure> {
    let source = served
        .slot()
        .current()
        .map(|g| g.source.clone())
        .ok_or_else(|| Failure::invalid("reload=watch needs something loaded to watch"))?;
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
        .map_err(|e| format!("reload=watch: inotify: {e}"))?;
    let mut watched = Watched {
        inotify,
        source,
        watches: Vec::new(),
        landed: false,
    };
    watched.follow()?;
    let dirs: Vec<String> = watched
        .watches
        .iter()
        .map(|w| w.dir.display().to_string())
        .collect();
    std::thread::Builder::new()
        .name("rustshim-reload".into())
        .spawn(move || watch(served, watched))
        .map_err(|e| format!("reload=watch: cannot start the watcher thread: {e}"))?;
    nbdkit_c::debug(&format!(
        "rustshim: watching {} for new builds",
        dirs.join(", ")
    ));
    Ok(())
}

/// What a directory is watched for.
const MASK: AddWatchFlags = AddWatchFlags::IN_CLOSE_WRITE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_MODIFY)
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF);

/// One name in one directory: the plugin (or filter) file, or a symlink on the way to it.
struct Watch {
    dir: PathBuf,
    name: OsString,
    /// `None` while the directory is gone (deleted, or moved away).
    wd: Option<WatchDescriptor>,
    /// When the last sign of a write to it was seen, while its end has not been.
    writing: Option<Instant>,
}

/// The watches of the file as `plugin=` (or `filter=`) named it: its directory, and when it is a
/// symlink, the directory of each link on the way and of the file it leads to.
struct Watched {
    inotify: Inotify,
    source: PathBuf,
    watches: Vec<Watch>,
    /// A finished file landed on one of the names since the last load.
    landed: bool,
}

/// What an event on a watched name says about the file there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Landing {
    /// A finished file is there: read it now.
    Done,
    /// A write started or goes on: wait for its end.
    Writing,
    /// Nothing to act on.
    Nothing,
}

/// What a name that was just created is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Created {
    /// A symbolic link: `symlink` makes it whole.
    Symlink,
    /// A regular file with another name too: a finished file linked there (cargo's output).
    HardLink,
    /// A file of no other name, made empty: written next, finished at its close.
    NewFile,
    /// A directory, or already gone again.
    Other,
}

/// What `path` is, which an `IN_CREATE` just named.
fn created(path: &Path) -> Created {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Created::Symlink,
        Ok(m) if m.is_file() && m.nlink() > 1 => Created::HardLink,
        Ok(m) if m.is_file() => Created::NewFile,
        _ => Created::Other,
    }
}

/// What the event `mask` on a name means, `writing` telling whether a write to it is under
/// way (`created` is asked only for `IN_CREATE`): the end of a write (`IN_CLOSE_WRITE`), a
/// finished file renamed or linked there (`IN_MOVED_TO`, `IN_CREATE` of a link) finish a build;
/// a new empty file (`IN_CREATE`) or a write (`IN_MODIFY`) start or continue one; a change of
/// mode or times (`IN_ATTRIB`: `chmod`, `touch`, `install`'s after the copy) is part of a write
/// under way, else the whole change.
fn landing(mask: AddWatchFlags, writing: bool, created: impl FnOnce() -> Created) -> Landing {
    if mask.intersects(AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE) {
        return Landing::Done;
    }
    if mask.contains(AddWatchFlags::IN_CREATE) {
        return match created() {
            Created::Symlink | Created::HardLink => Landing::Done,
            Created::NewFile => Landing::Writing,
            Created::Other => Landing::Nothing,
        };
    }
    if mask.contains(AddWatchFlags::IN_MODIFY)
        || (writing && mask.contains(AddWatchFlags::IN_ATTRIB))
    {
        return Landing::Writing;
    }
    if mask.contains(AddWatchFlags::IN_ATTRIB) {
        return Landing::Done;
    }
    Landing::Nothing
}

/// The (directory, name) pairs on the way from `source` to the file it leads to.
fn link_chain(source: &Path) -> Vec<(PathBuf, OsString)> {
    let mut chain = Vec::new();
    let mut path = source.to_path_buf();
    for _ in 0..40 {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            break;
        };
        let (dir, name) = (dir.to_path_buf(), name.to_os_string());
        chain.push((dir.clone(), name));
        match std::fs::read_link(&path) {
            Ok(target) => path = dir.join(target),
            Err(_) => break,
        }
    }
    chain
}

impl Watched {
    /// Watches the directories of the current link chain (again, if it changed).
    fn follow(&mut self) -> Result<(), String> {
        let chain = link_chain(&self.source);
        let current: Vec<(PathBuf, OsString)> = self
            .watches
            .iter()
            .map(|w| (w.dir.clone(), w.name.clone()))
            .collect();
        if chain == current {
            return Ok(());
        }
        for w in self.watches.drain(..) {
            if let Some(wd) = w.wd {
                let _ = self.inotify.rm_watch(wd);
            }
        }
        for (dir, name) in chain {
            let wd = self.inotify.add_watch(&dir, MASK).map_err(|e| {
                format!(
                    "reload=watch: cannot watch directory '{}': {e}",
                    dir.display()
                )
            });
            // At start-up every directory exists; later a missing one is waited for.
            let wd = match (wd, self.watches.is_empty() && current.is_empty()) {
                (Ok(wd), _) => Some(wd),
                (Err(e), true) => return Err(e),
                (Err(_), false) => None,
            };
            self.watches.push(Watch {
                dir,
                name,
                wd,
                writing: None,
            });
        }
        Ok(())
    }

    /// Takes every event that is queued (without waiting), noting what they say about the
    /// watched names.
    fn take_events(&mut self) {
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for event in events {
                self.take(event);
            }
        }
    }

    fn take(&mut self, event: InotifyEvent) {
        let now = Instant::now();
        if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            // Events were lost: whatever happened is known only once it has been quiet.
            for w in &mut self.watches {
                w.writing = Some(now);
            }
            return;
        }
        let gone = event.mask.intersects(
            AddWatchFlags::IN_IGNORED
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF
                | AddWatchFlags::IN_UNMOUNT,
        );
        let mut lost = Vec::new();
        for w in self.watches.iter_mut().filter(|w| w.wd == Some(event.wd)) {
            if gone {
                w.wd = None;
                lost.push(w.dir.clone());
            } else if event.name.as_deref() == Some(w.name.as_os_str()) {
                let path = w.dir.join(&w.name);
                match landing(event.mask, w.writing.is_some(), || created(&path)) {
                    Landing::Done => {
                        w.writing = None;
                        self.landed = true;
                    }
                    Landing::Writing => w.writing = Some(now),
                    Landing::Nothing => {}
                }
            }
        }
        if gone && !lost.is_empty() {
            // A moved directory is still watched where it went: stop that.
            let _ = self.inotify.rm_watch(event.wd);
            lost.dedup();
            for dir in lost {
                say(&format!(
                    "reload: lost the watch on '{}' (the directory was deleted or moved): new builds of {} are not seen until it exists again",
                    dir.display(),
                    self.source.display()
                ));
            }
        }
    }

    /// When the file is to be read: at once after a build finished, [`NO_END_SEEN`] after the
    /// last sign of a write whose end has not been seen; `None` while nothing happened.
    fn due(&self) -> Option<Instant> {
        match self.watches.iter().filter_map(|w| w.writing).max() {
            Some(last) => Some(last + NO_END_SEEN),
            None if self.landed => Some(Instant::now()),
            None => None,
        }
    }

    /// Forgets what happened, for a read of the file now; returns whether that is without the
    /// end of a write seen.
    fn settle(&mut self) -> bool {
        self.landed = false;
        let mut unfinished = false;
        for w in &mut self.watches {
            unfinished |= w.writing.take().is_some();
        }
        unfinished
    }

    /// Watches the directories that came back. A name already in one is taken as being
    /// written (when it was written is unknown): read once quiet, or at the end of its write.
    fn rearm(&mut self) {
        for i in 0..self.watches.len() {
            if self.watches[i].wd.is_some() {
                continue;
            }
            let dir = self.watches[i].dir.clone();
            if let Ok(wd) = self.inotify.add_watch(&dir, MASK) {
                let now = Instant::now();
                for w in self.watches.iter_mut().filter(|w| w.dir == dir) {
                    w.wd = Some(wd);
                    if std::fs::symlink_metadata(w.dir.join(&w.name)).is_ok() {
                        w.writing = Some(now);
                    }
                }
                say(&format!(
                    "reload: watching '{}' again for new builds of {}",
                    dir.display(),
                    self.source.display()
                ));
            }
        }
    }
}

/// How often a lost directory is looked for.
const LOOK_AGAIN: Duration = Duration::from_millis(250);

fn watch<S: Served>(served: &'static S, mut watched: Watched) {
    loop {
        let lost = watched.watches.iter().any(|w| w.wd.is_none());
        let mut timeout = watched.due().map_or(Duration::from_secs(3600), |at| {
            at.saturating_duration_since(Instant::now())
        });
        if lost {
            timeout = timeout.min(LOOK_AGAIN);
        }
        let mut fds = [PollFd::new(watched.inotify.as_fd(), PollFlags::POLLIN)];
        let _ = poll(
            &mut fds,
            PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX),
        );
        watched.take_events();
        if lost {
            watched.rearm();
        }
        // Events that came while a build was read and loaded are looked at at once; when they
        // were more of its burst (lld renames, then closes), the same bytes are not tried again.
        let mut tried = None;
        while watched.due().is_some_and(|at| at <= Instant::now()) {
            let unfinished = watched.settle();
            // A re-pointed link leads elsewhere now.
            let _ = watched.follow();
            tried = read_and_reload(served, &watched.source, unfinished, tried);
            watched.take_events();
        }
    }
}

/// Reloads from the file `source` leads to, unless it is gone or empty (nothing was built
/// there yet). `unfinished`: no end of a write was seen. Returns what identifies the bytes it
/// read, for [`reload`]'s `tried`.
fn read_and_reload<S: Served>(
    served: &S,
    source: &Path,
    unfinished: bool,
    tried: Option<Digest>,
) -> Option<Digest> {
    if std::fs::metadata(source).map_or(true, |m| m.len() == 0) {
        return None;
    }
    if unfinished {
        nbdkit_c::debug(&format!(
            "rustshim: no end of the write to {} seen for {} ms: reading it now",
            source.display(),
            NO_END_SEEN.as_millis()
        ));
    }
    reload(served, source, tried)
}

#[cfg(test)]
mod tests {
    use super::*;

    use AddWatchFlags as F;

    fn never() -> Created {
        panic!("only IN_CREATE looks at the file")
    }

    #[test]
    fn a_rename_a_close_after_writing_and_a_link_finish_a_build() {
        for writing in [false, true] {
            assert_eq!(landing(F::IN_MOVED_TO, writing, never), Landing::Done);
            assert_eq!(landing(F::IN_CLOSE_WRITE, writing, never), Landing::Done);
            for link in [Created::HardLink, Created::Symlink] {
                assert_eq!(landing(F::IN_CREATE, writing, || link), Landing::Done);
            }
        }
    }

    #[test]
    fn a_new_file_and_a_write_are_waited_out() {
        assert_eq!(
            landing(F::IN_CREATE, false, || Created::NewFile),
            Landing::Writing
        );
        assert_eq!(
            landing(F::IN_CREATE, false, || Created::Other),
            Landing::Nothing
        );
        assert_eq!(landing(F::IN_MODIFY, false, never), Landing::Writing);
        // A mode change is part of a write under way, or else the whole change (`chmod`).
        assert_eq!(landing(F::IN_ATTRIB, true, never), Landing::Writing);
        assert_eq!(landing(F::IN_ATTRIB, false, never), Landing::Done);
    }

    /// Where a sequence of events on the name leaves it: finished, or still being written.
    fn after(events: &[(AddWatchFlags, Created)]) -> Option<Landing> {
        let (mut writing, mut last) = (false, None);
        for &(mask, created) in events {
            match landing(mask, writing, || created) {
                Landing::Nothing => {}
                l => {
                    writing = l == Landing::Writing;
                    last = Some(l);
                }
            }
        }
        last
    }

    #[test]
    fn how_tools_write_ends_at_their_last_step() {
        let o = Created::Other;
        // cargo: unlink (not watched), link of the linker's finished output.
        assert_eq!(
            after(&[(F::IN_CREATE, Created::HardLink)]),
            Some(Landing::Done)
        );
        // `cp` over it: truncate, write, close; `cp -p` sets the mode before the close.
        let cp = [
            (F::IN_MODIFY, o),
            (F::IN_MODIFY, o),
            (F::IN_ATTRIB, o),
            (F::IN_CLOSE_WRITE, o),
        ];
        assert_eq!(after(&cp), Some(Landing::Done));
        assert_eq!(after(&cp[..3]), Some(Landing::Writing), "before the close");
        // A new file written, paused, not closed yet.
        let fresh = [(F::IN_CREATE, Created::NewFile), (F::IN_MODIFY, o)];
        assert_eq!(after(&fresh), Some(Landing::Writing));
        // A rename that is followed by a new write in place: that write is waited for.
        assert_eq!(
            after(&[(F::IN_MOVED_TO, o), (F::IN_MODIFY, o)]),
            Some(Landing::Writing)
        );
        // `install`: the close, then the mode.
        assert_eq!(
            after(&[(F::IN_CLOSE_WRITE, o), (F::IN_ATTRIB, o)]),
            Some(Landing::Done)
        );
    }

    #[test]
    fn a_created_name_is_told_apart_by_its_kind_and_links() {
        let dir =
            std::env::temp_dir().join(format!("rustshim-reload-created-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let built = dir.join("deps.so");
        std::fs::write(&built, b"a build").unwrap();
        std::fs::hard_link(&built, dir.join("linked.so")).unwrap();
        std::os::unix::fs::symlink("deps.so", dir.join("symlink.so")).unwrap();
        std::fs::File::create(dir.join("new.so")).unwrap();
        std::fs::create_dir(dir.join("dir.so")).unwrap();
        let kinds: Vec<Created> = ["linked.so", "symlink.so", "new.so", "dir.so", "gone.so"]
            .iter()
            .map(|name| created(&dir.join(name)))
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            kinds,
            [
                Created::HardLink,
                Created::Symlink,
                Created::NewFile,
                Created::Other,
                Created::Other
            ]
        );
    }
}
