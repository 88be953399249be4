//! The bytes of a plugin file as the shim loads them: read once from the file into an anonymous
//! memory file (`memfd`), which is then checked, compared, probed and handed to the dynamic
//! linker, in that order, so what is loaded is exactly what was checked.
//!
//! * Read once: a file that changes or shrinks while it is read (`cp` over it, a build writing
//!   it in place) gives a torn copy, which the checks then refuse; the linker never sees the
//!   file itself. (Checking the file and then copying it again let a truncated copy through, and
//!   the dynamic linker died of SIGBUS on its missing pages.)
//! * Sealed: after the read the memory file can neither shrink nor grow, and before loading
//!   nobody can write it any more (`F_SEAL_WRITE`), so the mapped pages stay what was checked.
//! * Nothing on disk: the copy has no name in any directory, so it goes with the process,
//!   however it ends (the copies used to be files in `$TMPDIR`, left behind by refused starts).
//! * Small: only the headers and the loadable segments are read (not the debug information,
//!   most of a debug build), so a loaded copy keeps only what is mapped, and reading is quick.
//!
//! The dynamic linker loads it as `/proc/self/fd/N`. It recognises an object it has already
//! loaded by that name, and file descriptor numbers are reused once closed, so each name is
//! given out once (see [`Image::loader_path`]).

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Mutex;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

/// How much of a file's end is hashed besides what is loaded.
const TAIL: u64 = 64 << 10;

/// What identifies a build: its length and a 128-bit hash of the bytes the dynamic linker
/// reads and of the file's last 64 KiB (where linkers put the section headers, which change
/// with any rebuild).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct Digest {
    len: u64,
    hash: [u64; 2],
}

/// A plugin file's bytes in a sealed memory file.
pub struct Image {
    file: File,
    len: u64,
    digest: Digest,
}

/// File descriptor numbers whose `/proc/self/fd/N` name was given to the dynamic linker.
static NAMES_GIVEN: Mutex<BTreeSet<RawFd>> = Mutex::new(BTreeSet::new());

impl Image {
    /// Reads `source` into a new memory file named after `label` (shown in `/proc/PID/maps`),
    /// hashing as it goes. Of an ELF file only what the dynamic linker reads is read (the
    /// headers and the loadable segments, at their offsets; the rest, mostly debug information,
    /// stays a hole): a file shorter than that gives a shorter image, which the checks call
    /// truncated. Anything else is read whole, for the checks to say what it is.
    pub fn read(source: &mut File, label: &str) -> io::Result<Image> {
        let name = std::ffi::CString::new(label.replace('\0', "?")).expect("no NUL");
        let fd = memfd_create(
            &name,
            MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
        )?;
        let file = File::from(fd);
        let size = source.metadata()?.len();
        let mut header = [0u8; 64];
        let got = read_full_at(source, &mut header, 0)?;
        let ranges = (got == header.len())
            .then(|| {
                crate::elf::loaded_ranges(&header, &mut |buf, at| read_full_at(source, buf, at))
            })
            .flatten()
            .unwrap_or_else(|| vec![(0, u64::MAX)]);
        let mut hasher = Hasher::default();
        let mut buf = vec![0u8; 1 << 20];
        // Where the file ended inside a range, if it did.
        let mut ended_at = None;
        'ranges: for (start, end) in merge(ranges) {
            hasher.word(start);
            let mut at = start;
            while at < end {
                let want = (end - at).min(buf.len() as u64) as usize;
                let n = read_full_at(source, &mut buf[..want], at)?;
                hasher.write(&buf[..n]);
                file.write_all_at(&buf[..n], at)?;
                at += n as u64;
                if n < want {
                    ended_at = Some(at);
                    break 'ranges;
                }
            }
        }
        let len = ended_at.unwrap_or(size);
        // The file's end too (not loaded): the section headers, which any rebuild changes, and
        // whatever was appended. Only for telling builds apart.
        let tail_at = size.saturating_sub(TAIL);
        let n = read_full_at(source, &mut buf[..(size - tail_at) as usize], tail_at)?;
        hasher.write(&buf[..n]);
        file.set_len(len)?;
        seal(&file, SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW)?;
        hasher.word(len);
        Ok(Image {
            file,
            len,
            digest: Digest {
                len,
                hash: hasher.finish(),
            },
        })
    }

    /// The number of bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What identifies these bytes.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        read_full_at(&self.file, buf, offset)
    }

    /// The memory file, for a probe process to inherit.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Drops every page outside `keep` (byte ranges; the loadable segments and the headers),
    /// then seals the rest against any write.
    pub fn keep_only(&self, keep: &[(u64, u64)]) -> io::Result<()> {
        const PAGE: u64 = 4096;
        let mut keep: Vec<(u64, u64)> = keep
            .iter()
            .map(|&(a, b)| (a / PAGE * PAGE, b.min(self.len).div_ceil(PAGE) * PAGE))
            .filter(|(a, b)| a < b)
            .collect();
        keep.sort_unstable();
        let mut from = 0;
        for (a, b) in keep.into_iter().chain([(u64::MAX, u64::MAX)]) {
            let to = a.min(self.len.div_ceil(PAGE) * PAGE);
            if from < to {
                nix::fcntl::fallocate(
                    self.file.as_raw_fd(),
                    nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
                        | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
                    from as i64,
                    (to - from) as i64,
                )?;
            }
            from = from.max(b);
        }
        seal(&self.file, SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SEAL)
    }

    /// The name to give the dynamic linker: `/proc/self/fd/N`, with an `N` whose name was never
    /// given before. The image must stay open until the linker has opened it.
    pub fn loader_path(&mut self) -> io::Result<PathBuf> {
        let mut given = NAMES_GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        let mut fd = self.file.as_raw_fd();
        while given.contains(&fd) {
            let candidate = (fd + 1..)
                .find(|n| !given.contains(n))
                .expect("descriptor numbers are plenty");
            let next = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(candidate)).map_err(|e| {
                io::Error::other(format!(
                    "no file descriptor number left for another plugin or filter copy ({} loaded: {e}): restart nbdkit",
                    given.len()
                ))
            })?;
            // SAFETY: `fcntl` just returned this new descriptor, owned by nothing else.
            self.file = File::from(unsafe { OwnedFd::from_raw_fd(next) });
            fd = next;
        }
        given.insert(fd);
        Ok(PathBuf::from(format!("/proc/self/fd/{fd}")))
    }
}

/// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Sorted ranges with overlapping ones joined.
fn merge(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

fn seal(file: &File, seals: SealFlag) -> io::Result<()> {
    fcntl(file.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals))?;
    Ok(())
}

/// A fast 128-bit hash (two multiply-xorshift lanes over 64-bit words) to tell builds apart. It
/// is not cryptographic: it only has to notice that a file was rebuilt.
#[derive(Default)]
struct Hasher {
    lanes: [u64; 2],
    tail: Vec<u8>,
}

impl Hasher {
    const K: [u64; 2] = [0x9E37_79B9_7F4A_7C15, 0xC2B2_AE3D_27D4_EB4F];

    fn word(&mut self, w: u64) {
        for (lane, k) in self.lanes.iter_mut().zip(Self::K) {
            let x = (*lane ^ w).wrapping_mul(k);
            *lane = x ^ (x >> 29) ^ w.rotate_left(17);
        }
    }

    fn write(&mut self, mut bytes: &[u8]) {
        if !self.tail.is_empty() {
            let need = 8 - self.tail.len();
            let take = need.min(bytes.len());
            self.tail.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.tail.len() < 8 {
                return;
            }
            let w = u64::from_le_bytes(self.tail[..8].try_into().expect("8 bytes"));
            self.tail.clear();
            self.word(w);
        }
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.word(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        self.tail.extend_from_slice(words.remainder());
    }

    fn finish(mut self) -> [u64; 2] {
        let mut last = [0u8; 8];
        last[..self.tail.len()].copy_from_slice(&self.tail);
        let n = self.tail.len() as u64;
        self.word(u64::from_le_bytes(last) ^ (n << 56));
        self.lanes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(bytes: &[u8], chunk: usize) -> [u64; 2] {
        let mut h = Hasher::default();
        for c in bytes.chunks(chunk) {
            h.write(c);
        }
        h.finish()
    }

    #[test]
    fn the_hash_does_not_depend_on_how_the_bytes_arrive_and_sees_every_byte() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = digest_of(&bytes, 1000);
        assert_eq!(digest_of(&bytes, 3), whole);
        assert_eq!(digest_of(&bytes, 8), whole);
        for at in [0, 7, 8, 500, 999] {
            let mut other = bytes.clone();
            other[at] ^= 1;
            assert_ne!(digest_of(&other, 1000), whole, "byte {at}");
        }
        assert_ne!(digest_of(&bytes[..999], 1000), whole);
        assert_ne!(digest_of(&[0], 1), digest_of(&[0, 0], 2));
    }

    #[test]
    fn an_image_is_sealed_and_named_once() {
        let mut src = File::open("/proc/self/exe").unwrap();
        let mut image = Image::read(&mut src, "rustshim-test").unwrap();
        assert!(image.len() > 4096);
        image.keep_only(&[(0, 4096)]).unwrap();
        let mut head = [0u8; 4];
        image.read_at(&mut head, 0).unwrap();
        assert_eq!(&head, b"\x7fELF");
        let mut far = [1u8; 4];
        image.read_at(&mut far, 8192).unwrap();
        assert_eq!(far, [0; 4], "dropped pages read as zeroes");
        assert!(image.file.write_at(b"x", 0).is_err(), "sealed");
        let first = image.loader_path().unwrap();
        let mut again = Image::read(&mut File::open("/proc/self/exe").unwrap(), "x").unwrap();
        drop(image);
        assert_ne!(again.loader_path().unwrap(), first);
    }
}
