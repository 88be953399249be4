//! Writing a Debian binary package the way Debian's own nbdkit plugin packages are laid out and
//! built, with `dpkg-deb`: the shim's package (`cargo xtask package`) and a plugin's (`cargo
//! rustshim package`) are both made here.
//!
//! Every entry is root's and dated `SOURCE_DATE_EPOCH`, so the same sources and toolchain give
//! the same package. Its mode is what it was added as, as Debian's `dh_fixperms` leaves it:
//! 0755 for directories and programs ([`Deb::program`]), 0644 for every other file, shared
//! objects included ([`Deb::shared_object`]). `Depends:` gets what `dpkg-shlibdeps` finds the
//! shared objects and programs need; both are stripped as `dh_strip` does.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::cmd::{mkdir, output, run, write};
use crate::Result;

/// What a package build needs from the system: dpkg-deb is in dpkg; dpkg-shlibdeps and
/// dpkg-architecture in dpkg-dev (with strip, from binutils); pod2man in perl.
pub const TOOLS: &[&str] = &["dpkg-dev", "binutils", "perl"];

/// A package being put together: its files under [`Deb::root`], in the source-package layout
/// `dpkg-shlibdeps` wants (`debian/control`, and the files in `debian/PACKAGE`).
pub struct Deb {
    package: String,
    /// The source-package-like directory.
    build: PathBuf,
    /// `build/debian/PACKAGE`: what gets installed, and `DEBIAN/`.
    stage: PathBuf,
    /// The ELF files added, relative to `/`: what `dpkg-shlibdeps` reads.
    elf: Vec<String>,
    /// The programs added, relative to `/`: the files that get mode 0755.
    programs: Vec<PathBuf>,
}

/// The machine's Debian architecture (`amd64`) and multiarch triplet (`x86_64-linux-gnu`, the
/// directory under /usr/lib where nbdkit keeps its plugins).
pub struct Arch {
    pub arch: String,
    pub multiarch: String,
}

impl Arch {
    pub fn of_this_machine() -> Result<Arch> {
        let dpkg = |program: &str, arg: &str| -> Result<String> {
            let out = output(program, Command::new(program).arg(arg))?;
            Ok(out.trim().to_string())
        };
        Ok(Arch {
            arch: dpkg("dpkg", "--print-architecture")?,
            multiarch: dpkg("dpkg-architecture", "-qDEB_HOST_MULTIARCH")?,
        })
    }

    /// nbdkit's plugin directory, as Debian's nbdkit has it, without the leading `/`.
    pub fn plugindir(&self) -> String {
        format!("usr/lib/{}/nbdkit/plugins", self.multiarch)
    }

    /// nbdkit's filter directory, as Debian's nbdkit has it, without the leading `/`.
    pub fn filterdir(&self) -> String {
        format!("usr/lib/{}/nbdkit/filters", self.multiarch)
    }
}

impl Deb {
    /// A new, empty package `package` put together in `work` (removed first if it exists).
    pub fn new(work: &Path, package: &str) -> Result<Deb> {
        if work.exists() {
            fs::remove_dir_all(work)
                .map_err(|e| format!("cannot remove {}: {e}", work.display()))?;
        }
        let stage = work.join("debian").join(package);
        mkdir(&stage.join("DEBIAN"))?;
        write(&work.join("debian/control"), "")?;
        Ok(Deb {
            package: package.to_string(),
            build: work.to_path_buf(),
            stage,
            elf: Vec::new(),
            programs: Vec::new(),
        })
    }

    /// The directory that becomes `/`.
    pub fn root(&self) -> &Path {
        &self.stage
    }

    /// Writes a file at `to` (relative to `/`).
    pub fn write(&self, to: &str, contents: &str) -> Result {
        write(&self.stage.join(to), contents)
    }

    /// Copies a shared object (a library, an nbdkit plugin or filter) to `to` (relative to `/`),
    /// stripped; mode 0644, as Debian installs libraries.
    pub fn shared_object(&mut self, from: &Path, to: &str) -> Result {
        self.strip(from, to)
    }

    /// Copies a program to `to` (relative to `/`, e.g. `usr/bin/NAME`), stripped; mode 0755.
    pub fn program(&mut self, from: &Path, to: &str) -> Result {
        self.strip(from, to)?;
        self.programs.push(PathBuf::from(to));
        Ok(())
    }

    /// Copies an ELF file to `to` (relative to `/`) without its debug information and symbol
    /// table, as Debian's dh_strip does (the dynamic symbols the loader needs stay), and records
    /// it for [`Deb::shlibdeps`].
    fn strip(&mut self, from: &Path, to: &str) -> Result {
        let path = self.stage.join(to);
        mkdir(path.parent().expect("an installed file has a directory"))?;
        run(
            &format!("strip {}", from.display()),
            Command::new("strip")
                .args(["--remove-section=.comment", "--remove-section=.note"])
                .arg("--strip-unneeded")
                .arg("-o")
                .arg(&path)
                .arg(from),
        )?;
        self.elf.push(to.to_string());
        Ok(())
    }

    /// A symbolic link at `link` (relative to `/`) to `target` (as the link will hold it).
    pub fn symlink(&self, target: &str, link: &str) -> Result {
        let link = self.stage.join(link);
        mkdir(link.parent().expect("a link has a directory"))?;
        std::os::unix::fs::symlink(target, &link)
            .map_err(|e| format!("cannot make the link {}: {e}", link.display()))
    }

    /// Compresses the file at `file` (relative to `/`) into `file.gz`, as Debian does (no name
    /// or time in the header).
    pub fn gzip(&self, file: &str) -> Result {
        let file = self.stage.join(file);
        run(
            &format!("gzip {}", file.display()),
            Command::new("gzip").args(["-9nf"]).arg(&file),
        )
    }

    /// `dpkg-shlibdeps`'s `shlibs:Depends` for every shared object and program added.
    pub fn shlibdeps(&self) -> Result<String> {
        let package = Path::new("debian").join(&self.package);
        let out = output(
            "dpkg-shlibdeps",
            Command::new("dpkg-shlibdeps")
                .current_dir(&self.build)
                .arg("-O")
                .args(self.elf.iter().map(|file| package.join(file))),
        )?;
        out.lines()
            .find_map(|line| line.strip_prefix("shlibs:Depends="))
            .map(str::to_string)
            .ok_or_else(|| format!("dpkg-shlibdeps printed no shlibs:Depends: {out}"))
    }

    /// Writes `DEBIAN/control` from `control`, in which `@INSTALLED_SIZE@` is filled in, and
    /// `DEBIAN/md5sums`; sets every mode and time; builds `deb`.
    pub fn build(self, control: &str, epoch: u64, deb: &Path) -> Result {
        let files = walk(&self.stage)?;
        let size = installed_size(&self.stage, &files)?.to_string();
        write(
            &self.stage.join("DEBIAN/control"),
            &control.replace("@INSTALLED_SIZE@", &size),
        )?;
        let sums = output(
            "md5sum",
            Command::new("md5sum")
                .current_dir(&self.stage)
                .args(files.iter().filter(|file| {
                    !is_link(&self.stage.join(file)) && self.stage.join(file).is_file()
                })),
        )?;
        write(&self.stage.join("DEBIAN/md5sums"), &sums)?;
        normalize(&self.stage, &self.programs, epoch)?;
        if let Some(dir) = deb.parent() {
            mkdir(dir)?;
        }
        run(
            "dpkg-deb --build",
            Command::new("dpkg-deb")
                .env("SOURCE_DATE_EPOCH", epoch.to_string())
                .args(["--root-owner-group", "--build"])
                .arg(&self.stage)
                .arg(deb),
        )
    }
}

/// The virtual package that stands for an ABI major version, `rustshim-abi-1` for 1.x: the
/// shim's package provides it at the version it speaks (`rustshim-abi-1 (= 1.1.0)`), a plugin's
/// package depends on it at least at the version it was built against, so dpkg refuses a plugin
/// whose ABI the installed shim does not speak.
pub fn abi_package(abi_version: &str) -> String {
    let major = abi_version.split('.').next().unwrap_or(abi_version);
    format!("rustshim-abi-{major}")
}

/// `date -u -d @EPOCH FORMAT`, e.g. `+%F`, or `-R` for RFC 2822.
pub fn utc(epoch: u64, format: &str) -> Result<String> {
    let out = output(
        "date",
        Command::new("date")
            .env("LC_ALL", "C")
            .args(["-u", "-d", &format!("@{epoch}"), format]),
    )?;
    Ok(out.trim().to_string())
}

/// `SOURCE_DATE_EPOCH` if set, else now: the time every file of a package gets.
pub fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|_| format!("SOURCE_DATE_EPOCH={value:?} is not a time in seconds")),
        Err(_) => Ok(SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())),
    }
}

/// A template with each `(placeholder, value)` filled in.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values
        .iter()
        .fold(template.to_string(), |text, (placeholder, value)| {
            text.replace(placeholder, value)
        })
}

/// The placeholders (`@UPPER_CASE@`) left in a filled-in template; a maintainer's address
/// (`a@b.c`) is not one.
pub fn placeholders_left(text: &str) -> Vec<&str> {
    let parts: Vec<&str> = text.split('@').collect();
    parts[1..parts.len().max(2) - 1]
        .iter()
        .copied()
        .filter(|between| {
            !between.is_empty() && between.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        })
        .collect()
}

fn is_link(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Every file, link and directory below `root`, as paths relative to it, sorted; `DEBIAN/` is
/// not part of what gets installed and is left out.
fn walk(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(root.join(&dir))
            .map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let path = dir.join(entry.file_name());
            if path == Path::new("DEBIAN") {
                continue;
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path.clone());
            }
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// `Installed-Size:` in KiB, as dpkg-gencontrol counts: each file rounded up, each directory
/// and link 1.
fn installed_size(root: &Path, files: &[PathBuf]) -> Result<u64> {
    files.iter().try_fold(0, |total, file| {
        let path = root.join(file);
        let meta = fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(total
            + if meta.is_file() {
                meta.len().div_ceil(1024)
            } else {
                1
            })
    })
}

/// Mode 0755 for directories and `programs`, 0644 for the other files, whatever mode they were
/// made with (a cdylib is 0755, a file written under a strict umask 0600), and the time `epoch`
/// for all, inside out (links have no mode of their own; dpkg-deb dates them).
fn normalize(stage: &Path, programs: &[PathBuf], epoch: u64) -> Result {
    let debian = Path::new("DEBIAN");
    let mut paths = walk(stage)?;
    paths.extend(walk(&stage.join(debian))?.iter().map(|p| debian.join(p)));
    paths.push(debian.to_path_buf());
    paths.push(PathBuf::new());
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(epoch);
    // Deepest first, so setting a directory's time comes after everything inside it.
    paths.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
    for relative in &paths {
        let path = stage.join(relative);
        if is_link(&path) {
            continue;
        }
        let mode = if path.is_dir() || programs.contains(relative) {
            0o755
        } else {
            0o644
        };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .and_then(|()| fs::File::open(&path)?.set_modified(time))
            .map_err(|e| format!("cannot set the mode and time of {}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_but_not_addresses() {
        assert_eq!(placeholders_left("a @NAME@ b @X_Y@"), ["NAME", "X_Y"]);
        assert!(placeholders_left("Maintainer: m <me@example.org>").is_empty());
        assert!(placeholders_left("no at all").is_empty());
    }
}
