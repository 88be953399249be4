//! `cargo xtask package`: the Debian package `target/debian/nbdkit-rustshim-plugin_VERSION_ARCH.deb`,
//! laid out as Debian's own nbdkit plugin packages are, written by `cargo_rustshim::deb` (which
//! `cargo rustshim package` uses for a plugin's own package).
//!
//! * the release shim as `nbdkit-rustshim-plugin.so` in Debian's nbdkit plugindir, and the
//!   example plugins in `rustshim/` beside it, where `plugin=NAME` finds them (as `cargo xtask
//!   install` puts them);
//! * a copy of the shim as `nbdkit-rustshim-filter.so` in nbdkit's filterdir, and the example
//!   filters in `rustshim/` beside it, where `filter=NAME` finds them;
//! * `cargo-rustshim` in /usr/bin, the plugin author's `cargo rustshim`;
//! * the man pages nbdkit-rustshim-plugin(1) and cargo-rustshim(1), rendered by `pod2man` from
//!   `host/nbdkit-rustshim-plugin.pod` and `cargo-rustshim/cargo-rustshim.pod`;
//! * `copyright` (machine-readable) and `changelog.gz` in its doc directory.
//!
//! The metadata are templates in `xtask/templates/package/`. `Depends:` is nbdkit and what
//! `dpkg-shlibdeps` finds the shared objects and cargo-rustshim need. Files are dated
//! `SOURCE_DATE_EPOCH`, by default the last commit's time, so the same commit and toolchain give
//! the same package.

use std::path::Path;
use std::process::Command;

use cargo_rustshim::deb::{abi_package, fill, utc, Arch, Deb, TOOLS};
use cargo_rustshim::deps;

use crate::build::build_artifacts;
use crate::install::{FILTER_SHIM_INSTALLED, INSTALLED_FILTERS, INSTALLED_PLUGINS, SHIM_INSTALLED};
use crate::workspace::{
    cargo, filter_path, output, plugin_path, run, target_dir, workspace, workspace_metadata, SHIM,
};
use crate::Result;

/// The binary package's name.
pub const PACKAGE: &str = "nbdkit-rustshim-plugin";
/// The man pages: name, and source (POD).
const MAN_PAGES: [(&str, &str); 2] = [
    (PACKAGE, "host/nbdkit-rustshim-plugin.pod"),
    ("cargo-rustshim", "cargo-rustshim/cargo-rustshim.pod"),
];

/// `DEBIAN/control`: `@VERSION@`, `@ARCH@`, `@INSTALLED_SIZE@` (KiB) and `@SHLIBS@` (what
/// `dpkg-shlibdeps` says the shared objects and cargo-rustshim need) are filled in.
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
    /// The ABI it speaks: rustshim-plugin-api's version.
    abi: String,
    arch: Arch,
    /// `SOURCE_DATE_EPOCH`, or the last commit's time.
    epoch: u64,
    /// The commit built, and whether the tree had uncommitted changes.
    commit: String,
    /// The years of the first and the last commit: `2026` or `2025-2026`.
    years: String,
}

pub fn package() -> Result {
    deps::ensure_host(TOOLS)?;
    build_artifacts(true)?;
    run(
        "build cargo-rustshim",
        cargo().args(["build", "--release", "--quiet", "-p", "cargo-rustshim"]),
    )?;
    let facts = Facts::read()?;

    let out = target_dir(true).with_file_name("debian");
    let mut deb = Deb::new(&out.join("build"), PACKAGE)?;
    add_shared_objects(&mut deb, &facts)?;
    deb.program(
        &target_dir(true).join("cargo-rustshim"),
        "usr/bin/cargo-rustshim",
    )?;
    for (name, source) in MAN_PAGES {
        add_man_page(&deb, &facts, name, source)?;
    }
    add_docs(&deb, &facts)?;
    let shlibs = deb.shlibdeps()?;
    let control = fill(
        CONTROL,
        &[
            ("@VERSION@", &facts.version),
            ("@ARCH@", &facts.arch.arch),
            ("@SHLIBS@", &shlibs),
            ("@ABI_PACKAGE@", &abi_package(&facts.abi)),
            ("@ABI_VERSION@", &facts.abi),
        ],
    );
    let file = out.join(format!(
        "{PACKAGE}_{}_{}.deb",
        facts.version, facts.arch.arch
    ));
    deb.build(&control, facts.epoch, &file)?;
    println!("package: wrote {}", file.display());
    println!("install: apt-get install {}", file.display());
    Ok(())
}

/// The release shim into nbdkit's plugindir and (a copy) its filterdir, the example plugins and
/// filters into `rustshim/` beside each.
fn add_shared_objects(deb: &mut Deb, facts: &Facts) -> Result {
    let release = target_dir(true);
    let (plugindir, filterdir) = (facts.arch.plugindir(), facts.arch.filterdir());
    let mut objects = vec![
        (release.join(SHIM), format!("{plugindir}/{SHIM_INSTALLED}")),
        (
            release.join(SHIM),
            format!("{filterdir}/{FILTER_SHIM_INSTALLED}"),
        ),
    ];
    for name in INSTALLED_PLUGINS {
        let file = plugin_path(Path::new(&format!("{plugindir}/rustshim")), name);
        objects.push((plugin_path(&release, name), file.display().to_string()));
    }
    for name in INSTALLED_FILTERS {
        let file = filter_path(Path::new(&format!("{filterdir}/rustshim")), name);
        objects.push((filter_path(&release, name), file.display().to_string()));
    }
    for (from, to) in &objects {
        deb.shared_object(from, to)?;
    }
    Ok(())
}

/// The man page `name`(1), rendered from its POD `source` as nbdkit renders its own.
fn add_man_page(deb: &Deb, facts: &Facts, name: &str, source: &str) -> Result {
    let man = format!("usr/share/man/man1/{name}.1");
    deb.write(&man, "")?;
    run(
        "pod2man",
        Command::new("pod2man")
            .args(["--section=1", "--center=nbdkit-rustshim", "--utf8"])
            .arg(format!("--name={name}"))
            .arg(format!("--release=nbdkit-rustshim {}", facts.version))
            .arg(format!("--date={}", utc(facts.epoch, "+%F")?))
            .arg("--errors=die")
            .arg(workspace().join(source))
            .arg(deb.root().join(&man)),
    )?;
    deb.gzip(&man)
}

/// `copyright` and `changelog.gz` in the doc directory.
fn add_docs(deb: &Deb, facts: &Facts) -> Result {
    let doc = format!("usr/share/doc/{PACKAGE}");
    let copyright = fill(
        COPYRIGHT,
        &[("@YEAR@", &facts.years), ("@CRATES@", &bundled_crates()?)],
    );
    deb.write(&format!("{doc}/copyright"), &copyright)?;
    let changelog = fill(
        CHANGELOG,
        &[
            ("@VERSION@", &facts.version),
            ("@COMMIT@", &facts.commit),
            ("@DATE@", &utc(facts.epoch, "-R")?),
        ],
    );
    deb.write(&format!("{doc}/changelog"), &changelog)?;
    deb.gzip(&format!("{doc}/changelog"))
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
        Ok(Facts {
            version: shim_version()?,
            abi: workspace_version("rustshim-plugin-api")?,
            arch: Arch::of_this_machine()?,
            epoch,
            commit,
            years,
        })
    }
}

/// The shim crate's version, from `cargo metadata`.
fn shim_version() -> Result<String> {
    workspace_version(PACKAGE)
}

/// The version of the workspace's package `name`, from `cargo metadata`.
fn workspace_version(name: &str) -> Result<String> {
    let metadata = workspace_metadata()?;
    metadata["packages"]
        .as_array()
        .and_then(|packages| {
            packages
                .iter()
                .find(|p| p["name"] == name)
                .and_then(|p| p["version"].as_str())
        })
        .map(str::to_string)
        .ok_or_else(|| format!("cargo metadata names no package {name}"))
}

/// The crates.io crates linked into the shim, the plugins, the filters and cargo-rustshim (not
/// build scripts or proc-macros), as lines of `copyright`'s header comment:
/// `  NAME VERSION (LICENCE)`.
fn bundled_crates() -> Result<String> {
    let mut cmd = cargo();
    cmd.args(["tree", "--edges=normal,no-proc-macro", "--prefix=none"])
        .args(["--format", "{p}\t{l}"])
        .args(["-p", PACKAGE, "-p", "cargo-rustshim"]);
    for name in INSTALLED_PLUGINS {
        cmd.args(["-p", &format!("rustshim-{name}")]);
    }
    for name in INSTALLED_FILTERS {
        cmd.args(["-p", &format!("rustshim-filter-{name}")]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use cargo_rustshim::deb::placeholders_left;

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
            "@ABI_PACKAGE@",
            "@ABI_VERSION@",
        ]
        .map(|placeholder| (placeholder, "x"));
        for template in [CONTROL, COPYRIGHT, CHANGELOG] {
            let filled = fill(template, &values);
            assert_eq!(placeholders_left(&filled), [] as [&str; 0], "{filled}");
        }
    }
}
