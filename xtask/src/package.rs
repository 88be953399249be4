//! `cargo xtask package`: the Debian package `target/debian/nbdkit-rustshim-plugin_VERSION_ARCH.deb`,
//! laid out as Debian's own nbdkit plugin packages are, made with `dpkg-deb`.
//!
//! * the release shim as `nbdkit-rustshim-plugin.so` in Debian's nbdkit plugindir, and the
//!   example plugins in `rustshim/` beside it, where `plugin=NAME` finds them (as `cargo xtask
//!   install` puts them);
//! * the man page nbdkit-rustshim-plugin(1), rendered by `pod2man` from
//!   `host/nbdkit-rustshim-plugin.pod`;
//! * `copyright` (machine-readable) and `changelog.gz` in its doc directory.
//!
//! The metadata are templates in `xtask/templates/package/`. `Depends:` is nbdkit and what
//! `dpkg-shlibdeps` finds the shared objects need. Every file is root's, mode 0644 (0755 for
//! directories), and dated `SOURCE_DATE_EPOCH` (by default the last commit's time), so the same
//! commit and toolchain give the same package.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::build::build_artifacts;
use crate::install::{INSTALLED_PLUGINS, SHIM_INSTALLED};
use crate::workspace::{
    cargo, mkdir, output, plugin_path, run, target_dir, workspace, write, SHIM,
};
use crate::{deps, Result};

/// The binary package's name.
const PACKAGE: &str = "nbdkit-rustshim-plugin";
/// The man page's source, in the shim's crate.
const MAN_SOURCE: &str = "host/nbdkit-rustshim-plugin.pod";

/// `DEBIAN/control`: `@VERSION@`, `@ARCH@`, `@INSTALLED_SIZE@` (KiB) and `@SHLIBS@` (what
/// `dpkg-shlibdeps` says the shared objects need) are filled in.
const CONTROL: &str = include_str!("../templates/package/control.in");
/// The doc directory's `copyright`: `@YEAR@` (of the first and the last commit) and `@CRATES@`
/// (the crates built into the shared objects, one per line, with their licences).
const COPYRIGHT: &str = include_str!("../templates/package/copyright.in");
/// The doc directory's `changelog`: `@VERSION@`, `@COMMIT@` and `@DATE@` (RFC 2822).
const CHANGELOG: &str = include_str!("../templates/package/changelog.in");

/// What the package is made of besides the files: facts about this checkout and this machine.
struct Facts {
    /// The shim crate's version, the package's.
    version: String,
    /// `dpkg --print-architecture`: amd64.
    arch: String,
    /// `dpkg-architecture -qDEB_HOST_MULTIARCH`: x86_64-linux-gnu.
    multiarch: String,
    /// `SOURCE_DATE_EPOCH`, or the last commit's time.
    epoch: u64,
    /// The commit built, and whether the tree had uncommitted changes.
    commit: String,
    /// The years of the first and the last commit: `2026` or `2025-2026`.
    years: String,
}

pub fn package() -> Result {
    // dpkg-deb is in dpkg; dpkg-shlibdeps and dpkg-architecture in dpkg-dev (with strip, from
    // binutils); pod2man in perl.
    deps::ensure_host(&["dpkg-dev", "binutils", "perl"])?;
    build_artifacts(true)?;
    let facts = Facts::read()?;

    // dpkg-shlibdeps wants a source package's layout: debian/control, and the package's files
    // in debian/PACKAGE, under a directory with a DEBIAN/.
    let out = target_dir(true).with_file_name("debian");
    let build = out.join("build");
    if build.exists() {
        fs::remove_dir_all(&build)
            .map_err(|e| format!("cannot remove {}: {e}", build.display()))?;
    }
    let stage = build.join("debian").join(PACKAGE);
    mkdir(&stage.join("DEBIAN"))?;
    write(&build.join("debian/control"), "")?;

    let objects = add_shared_objects(&stage, &facts)?;
    add_man_page(&stage, &facts)?;
    add_docs(&stage, &facts)?;
    let shlibs = shlibdeps(&build, objects.iter().map(String::as_str))?;
    add_control(&stage, &facts, &shlibs)?;
    normalize(&stage, facts.epoch)?;

    let deb = out.join(format!("{PACKAGE}_{}_{}.deb", facts.version, facts.arch));
    run(
        "dpkg-deb --build",
        Command::new("dpkg-deb")
            .env("SOURCE_DATE_EPOCH", facts.epoch.to_string())
            .args(["--root-owner-group", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    println!("package: wrote {}", deb.display());
    println!("install: apt-get install {}", deb.display());
    Ok(())
}

/// The release shim into nbdkit's plugindir, the example plugins into `rustshim/` beside it;
/// returns where they are in the package.
fn add_shared_objects(stage: &Path, facts: &Facts) -> Result<Vec<String>> {
    let release = target_dir(true);
    let plugindir = format!("usr/lib/{}/nbdkit/plugins", facts.multiarch);
    let mut objects = vec![(release.join(SHIM), format!("{plugindir}/{SHIM_INSTALLED}"))];
    for name in INSTALLED_PLUGINS {
        let file = plugin_path(Path::new(&format!("{plugindir}/rustshim")), name);
        objects.push((plugin_path(&release, name), file.display().to_string()));
    }
    for (from, to) in &objects {
        strip(from, &stage.join(to))?;
    }
    Ok(objects.into_iter().map(|(_, to)| to).collect())
}

/// nbdkit-rustshim-plugin(1), rendered from its POD as nbdkit renders its own.
fn add_man_page(stage: &Path, facts: &Facts) -> Result {
    let man = stage.join(format!("usr/share/man/man1/{PACKAGE}.1"));
    mkdir(man.parent().expect("a man page has a directory"))?;
    run(
        "pod2man",
        Command::new("pod2man")
            .args(["--section=1", "--center=nbdkit-rustshim", "--utf8"])
            .arg(format!("--name={PACKAGE}"))
            .arg(format!("--release=nbdkit-rustshim {}", facts.version))
            .arg(format!("--date={}", utc(facts.epoch, "+%F")?))
            .arg("--errors=die")
            .arg(workspace().join(MAN_SOURCE))
            .arg(&man),
    )?;
    gzip(&man)
}

/// `copyright` and `changelog.gz` in the doc directory.
fn add_docs(stage: &Path, facts: &Facts) -> Result {
    let doc = stage.join(format!("usr/share/doc/{PACKAGE}"));
    let copyright = fill(
        COPYRIGHT,
        &[("@YEAR@", &facts.years), ("@CRATES@", &bundled_crates()?)],
    );
    write(&doc.join("copyright"), &copyright)?;
    let changelog = fill(
        CHANGELOG,
        &[
            ("@VERSION@", &facts.version),
            ("@COMMIT@", &facts.commit),
            ("@DATE@", &utc(facts.epoch, "-R")?),
        ],
    );
    write(&doc.join("changelog"), &changelog)?;
    gzip(&doc.join("changelog"))
}

/// `DEBIAN/control` and `DEBIAN/md5sums`, once every other file is in place.
fn add_control(stage: &Path, facts: &Facts, shlibs: &str) -> Result {
    let files = walk(stage)?;
    let size = installed_size(stage, &files)?.to_string();
    let control = fill(
        CONTROL,
        &[
            ("@VERSION@", &facts.version),
            ("@ARCH@", &facts.arch),
            ("@INSTALLED_SIZE@", &size),
            ("@SHLIBS@", shlibs),
        ],
    );
    write(&stage.join("DEBIAN/control"), &control)?;
    let sums = output(
        "md5sum",
        Command::new("md5sum")
            .current_dir(stage)
            .args(files.iter().filter(|file| stage.join(file).is_file())),
    )?;
    write(&stage.join("DEBIAN/md5sums"), &sums)
}

impl Facts {
    fn read() -> Result<Facts> {
        let git = |args: &[&str]| -> Result<String> {
            let out = output(
                &format!("git {}", args.join(" ")),
                Command::new("git").current_dir(workspace()).args(args),
            )?;
            Ok(out.trim().to_string())
        };
        let epoch_of = |text: &str| -> Result<u64> {
            text.trim()
                .parse()
                .map_err(|_| format!("not a time in seconds: {text:?}"))
        };
        let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(value) => epoch_of(&value)?,
            Err(_) => epoch_of(&git(&["log", "-1", "--format=%ct"])?)?,
        };
        let first = git(&["log", "--max-parents=0", "--format=%ct"])?;
        let first = epoch_of(first.lines().last().unwrap_or_default())?;
        let (first, last) = (utc(first, "+%Y")?, utc(epoch, "+%Y")?);
        let years = if first == last {
            last
        } else {
            format!("{first}-{last}")
        };
        let mut commit = git(&["rev-parse", "--short=12", "HEAD"])?;
        if !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty() {
            commit.push_str(" (with uncommitted changes)");
        }
        let dpkg = |program: &str, arg: &str| -> Result<String> {
            let out = output(program, Command::new(program).arg(arg))?;
            Ok(out.trim().to_string())
        };
        Ok(Facts {
            version: shim_version()?,
            arch: dpkg("dpkg", "--print-architecture")?,
            multiarch: dpkg("dpkg-architecture", "-qDEB_HOST_MULTIARCH")?,
            epoch,
            commit,
            years,
        })
    }
}

/// The shim crate's version, from `cargo metadata`.
fn shim_version() -> Result<String> {
    let metadata = output(
        "cargo metadata",
        cargo().args(["metadata", "--no-deps", "--format-version=1"]),
    )?;
    let metadata: serde_json::Value =
        serde_json::from_str(&metadata).map_err(|e| format!("cargo metadata: {e}"))?;
    metadata["packages"]
        .as_array()
        .and_then(|packages| {
            packages
                .iter()
                .find(|p| p["name"] == PACKAGE)
                .and_then(|p| p["version"].as_str())
        })
        .map(str::to_string)
        .ok_or_else(|| format!("cargo metadata names no package {PACKAGE}"))
}

/// The crates.io crates linked into the shim and the plugins (not build scripts or proc-macros),
/// as lines of `copyright`'s header comment: `  NAME VERSION (LICENCE)`.
fn bundled_crates() -> Result<String> {
    let mut cmd = cargo();
    cmd.args(["tree", "--edges=normal,no-proc-macro", "--prefix=none"])
        .args(["--format", "{p}\t{l}"])
        .args(["-p", PACKAGE]);
    for name in INSTALLED_PLUGINS {
        cmd.args(["-p", &format!("rustshim-{name}")]);
    }
    let tree = output("cargo tree", &mut cmd)?;
    let mut crates: Vec<String> = tree
        .lines()
        .filter_map(|line| line.split_once('\t'))
        // Workspace members are shown with their path: they are this package's own code.
        .filter(|(package, _)| !package.contains(" ("))
        .map(|(package, licence)| format!("  {package} ({})", licence.trim_end_matches(" (*)")))
        .collect();
    crates.sort();
    crates.dedup();
    Ok(crates.join("\n"))
}

/// `dpkg-shlibdeps`'s `shlibs:Depends` for the shared objects at `files` (relative to the
/// package's root) of the source-package layout in `build`.
fn shlibdeps<'a>(build: &Path, files: impl Iterator<Item = &'a str>) -> Result<String> {
    let package = Path::new("debian").join(PACKAGE);
    let out = output(
        "dpkg-shlibdeps",
        Command::new("dpkg-shlibdeps")
            .current_dir(build)
            .arg("-O")
            .args(files.map(|file| package.join(file))),
    )?;
    out.lines()
        .find_map(|line| line.strip_prefix("shlibs:Depends="))
        .map(str::to_string)
        .ok_or_else(|| format!("dpkg-shlibdeps printed no shlibs:Depends: {out}"))
}

/// Copies a shared object without its debug information and symbol table, as Debian's dh_strip
/// does (the dynamic symbols the loader needs stay).
fn strip(from: &Path, to: &Path) -> Result {
    mkdir(to.parent().expect("an installed file has a directory"))?;
    run(
        &format!("strip {}", from.display()),
        Command::new("strip")
            .args(["--remove-section=.comment", "--remove-section=.note"])
            .arg("--strip-unneeded")
            .arg("-o")
            .arg(to)
            .arg(from),
    )
}

/// Compresses `file` into `file.gz` in the way Debian does (no name or time in the header).
fn gzip(file: &Path) -> Result {
    run(
        &format!("gzip {}", file.display()),
        Command::new("gzip").args(["-9nf"]).arg(file),
    )
}

/// `date -u -d @EPOCH FORMAT`, e.g. `+%F`, or `-R` for RFC 2822.
fn utc(epoch: u64, format: &str) -> Result<String> {
    let out = output(
        "date",
        Command::new("date")
            .env("LC_ALL", "C")
            .args(["-u", "-d", &format!("@{epoch}"), format]),
    )?;
    Ok(out.trim().to_string())
}

/// A template with each `(placeholder, value)` filled in.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values
        .iter()
        .fold(template.to_string(), |text, (placeholder, value)| {
            text.replace(placeholder, value)
        })
}

/// Every file and directory below `root`, as paths relative to it, sorted; `DEBIAN/` is not
/// part of what gets installed and is left out.
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
            if entry.path().is_dir() {
                pending.push(path.clone());
            }
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// `Installed-Size:` in KiB, as dpkg-gencontrol counts: each file rounded up, each directory 1.
fn installed_size(root: &Path, files: &[PathBuf]) -> Result<u64> {
    files.iter().try_fold(0, |total, file| {
        let path = root.join(file);
        let meta = fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(total
            + if meta.is_dir() {
                1
            } else {
                meta.len().div_ceil(1024)
            })
    })
}

/// Mode 0755 for directories, 0644 for files, and the time `epoch` for all, inside out.
fn normalize(stage: &Path, epoch: u64) -> Result {
    let debian = Path::new("DEBIAN");
    let mut paths = walk(stage)?;
    paths.extend(walk(&stage.join(debian))?.iter().map(|p| debian.join(p)));
    paths.push(debian.to_path_buf());
    paths.push(PathBuf::new());
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(epoch);
    // Deepest first, so setting a directory's time comes after everything inside it.
    paths.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
    for path in paths.iter().map(|path| stage.join(path)) {
        let mode = if path.is_dir() { 0o755 } else { 0o644 };
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
    fn every_placeholder_is_filled_in() {
        let values = [
            "@VERSION@",
            "@ARCH@",
            "@INSTALLED_SIZE@",
            "@SHLIBS@",
            "@YEAR@",
            "@CRATES@",
            "@COMMIT@",
            "@DATE@",
        ]
        .map(|placeholder| (placeholder, "x"));
        for template in [CONTROL, COPYRIGHT, CHANGELOG] {
            let filled = fill(template, &values);
            // A placeholder is upper case between two `@`s (the maintainer's address is not).
            let parts: Vec<&str> = filled.split('@').collect();
            let left = parts[1..parts.len().max(2) - 1].iter().find(|between| {
                !between.is_empty() && between.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            });
            assert_eq!(left, None, "{filled}");
        }
    }
}
