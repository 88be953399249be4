//! `cargo rustshim package`: a Debian package of the crate's plugin (or filter) alone,
//! `nbdkit-plugin-NAME` (`nbdkit-filter-NAME`), as Debian names nbdkit's plugins
//! (`nbdkit-plugin-python`), in `target/debian/PACKAGE_VERSION_ARCH.deb`, that depends on the
//! shim's package (`nbdkit-rustshim-plugin`, from `cargo xtask package`) and installs beside it:
//!
//! * a plugin as `rustshim/libNAME.so` in nbdkit's plugindir, and `nbdkit-NAME-plugin.so`
//!   there, a link to the installed shim: `nbdkit NAME [args]` then serves it as if it were a C
//!   plugin called NAME (the shim learns NAME from the file name it was loaded as). A link, not
//!   a copy, so an upgrade of the shim's package upgrades every plugin's shim;
//! * a filter as `rustshim/libNAME.so` in nbdkit's filterdir, where `--filter=rustshim
//!   filter=NAME` finds it;
//! * `copyright` and `changelog.gz` in `/usr/share/doc/PACKAGE`.
//!
//! Its `Description:` is the first line of the crate's `description`, else `nbdkit plugin
//! NAME, written in Rust` (`filter`).
//!
//! The release build is stripped; files are dated `SOURCE_DATE_EPOCH` (default: now). Written by
//! [`deb`](crate::deb), the code that writes the shim's own package.

use std::path::Path;

use crate::deb::{abi_package, fill, placeholders_left, source_date_epoch, utc, Arch, Deb, TOOLS};
use rustshim_harness::SHIM_INSTALLED;

use crate::new::Kind;
use crate::plugin_crate::PluginCrate;
use crate::{deps, Result};

const CONTROL: &str = include_str!("../templates/package/control.in");
const COPYRIGHT: &str = include_str!("../templates/package/copyright.in");
const CHANGELOG: &str = include_str!("../templates/package/changelog.in");

/// Builds the package; returns its path.
pub fn package(manifest: Option<&Path>) -> Result<std::path::PathBuf> {
    deps::ensure_host(TOOLS)?;
    let krate = PluginCrate::find(manifest)?;
    let name = plugin_name(&krate.name)?;
    let build = krate
        .build(true)?
        .ok_or("the release build failed (cargo's messages are above)")?;
    let arch = Arch::of_this_machine()?;
    let epoch = source_date_epoch()?;
    let package = package_name(krate.kind, &name);
    let out = krate.target_dir.join("debian");
    let mut deb = Deb::new(&out.join(format!("build-{package}")), &package)?;

    let (installed, usage, what, kind) = match krate.kind {
        Kind::Plugin => {
            let dir = arch.plugindir();
            deb.symlink(SHIM_INSTALLED, &format!("{dir}/nbdkit-{name}-plugin.so"))?;
            (
                format!("{dir}/rustshim/lib{name}.so"),
                format!("nbdkit {name} [KEY=VALUE ...]"),
                format!("The nbdkit plugin {name},"),
                "plugin",
            )
        }
        Kind::Filter => (
            format!("{}/rustshim/lib{name}.so", arch.filterdir()),
            format!("nbdkit --filter=rustshim PLUGIN ... filter={name} [KEY=VALUE ...]"),
            format!("The nbdkit filter {name},"),
            "filter",
        ),
    };
    deb.shared_object(&build, &installed)?;

    let api = krate.api_version.clone().ok_or(
        "the crate does not depend on rustshim-plugin-api: it is no rustshim plugin or filter",
    )?;
    let abi = abi_package(&api);
    let maintainer = maintainer();
    if maintainer.default {
        eprintln!(
            "package: warning: Maintainer: is {} (set DEBFULLNAME and DEBEMAIL to name yourself)",
            maintainer.line
        );
    }
    let maintainer = maintainer.line;
    let values = [
        ("@PACKAGE@", package.as_str()),
        ("@NAME@", name.as_str()),
        ("@VERSION@", krate.version.as_str()),
        ("@ARCH@", arch.arch.as_str()),
        ("@MAINTAINER@", maintainer.as_str()),
        ("@KIND@", kind),
        ("@WHAT@", what.as_str()),
        ("@USAGE@", usage.as_str()),
        ("@ABI_PACKAGE@", abi.as_str()),
        ("@ABI_VERSION@", api.as_str()),
    ];
    write_docs(&mut deb, &krate, &package, &values, epoch)?;

    let shlibs = deb.shlibdeps()?;
    let summary = krate
        .description
        .as_deref()
        .map(|d| d.lines().next().unwrap_or("").trim().to_string())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| format!("nbdkit {kind} {name}, written in Rust"));
    let control = fill(
        CONTROL,
        &[
            &values[..],
            &[("@SHLIBS@", &shlibs), ("@SUMMARY@", &summary)],
        ]
        .concat(),
    );
    let left = placeholders_left(&control);
    if left.iter().any(|p| *p != "INSTALLED_SIZE") {
        return Err(format!("control template left unfilled: {left:?}"));
    }
    let file = out.join(format!("{package}_{}_{}.deb", krate.version, arch.arch));
    deb.build(&control, epoch, &file)?;
    println!("package: wrote {}", file.display());
    match krate.kind {
        Kind::Plugin => println!(
            "install: apt-get install {} (with nbdkit-rustshim-plugin), then: nbdkit {name} ...",
            file.display()
        ),
        Kind::Filter => println!(
            "install: apt-get install {} (with nbdkit-rustshim-plugin), then: nbdkit \
             --filter=rustshim PLUGIN filter={name} ...",
            file.display()
        ),
    }
    Ok(file)
}

/// The package of the plugin or filter `name`: `nbdkit-plugin-NAME` or `nbdkit-filter-NAME`, in
/// the style of Debian's own (`nbdkit-plugin-python`), so that no vendor's package takes a
/// name another Debian package may have.
fn package_name(kind: Kind, name: &str) -> String {
    match kind {
        Kind::Plugin => format!("nbdkit-plugin-{name}"),
        Kind::Filter => format!("nbdkit-filter-{name}"),
    }
}

/// The package's `copyright` and `changelog` (gzipped), under `usr/share/doc/PACKAGE`.
fn write_docs(
    deb: &mut Deb,
    krate: &PluginCrate,
    package: &str,
    values: &[(&str, &str)],
    epoch: u64,
) -> Result<()> {
    let doc = format!("usr/share/doc/{package}");
    let year = utc(epoch, "+%Y")?;
    let licence = krate.license.clone().unwrap_or_else(|| {
        eprintln!(
            "package: warning: {} has no license field: copyright says the licence is unknown",
            krate.manifest.display()
        );
        "unknown (the crate's Cargo.toml has no license field)".to_string()
    });
    let copyright = fill(
        COPYRIGHT,
        &[values, &[("@YEAR@", &year), ("@LICENSE@", &licence)]].concat(),
    );
    deb.write(&format!("{doc}/copyright"), &copyright)?;
    let changelog = fill(
        CHANGELOG,
        &[values, &[("@DATE@", &utc(epoch, "-R")?)]].concat(),
    );
    deb.write(&format!("{doc}/changelog"), &changelog)?;
    deb.gzip(&format!("{doc}/changelog"))?;
    Ok(())
}

/// The name nbdkit will know it by: the crate's, which must also fit in a Debian package name
/// (lowercase letters, digits, `-`; `_` becomes `-`) and be an nbdkit short name.
fn plugin_name(crate_name: &str) -> Result<String> {
    let name = crate_name.replace('_', "-");
    let valid = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid || name == "rustshim" {
        return Err(format!(
            "the crate name '{crate_name}' cannot name a Debian package and an nbdkit plugin: \
             use lowercase letters, digits and '-' (and not 'rustshim')"
        ));
    }
    Ok(name)
}

/// `Maintainer:`: `$DEBFULLNAME <$DEBEMAIL>` as Debian's tools take it, else the user at this
/// host.
struct Maintainer {
    line: String,
    /// Whether it is the made-up default (no `DEBEMAIL`).
    default: bool,
}

fn maintainer() -> Maintainer {
    let var = |key: &str| std::env::var(key).ok().filter(|v| !v.trim().is_empty());
    let line = match (var("DEBFULLNAME"), var("DEBEMAIL")) {
        (Some(name), Some(email)) => format!("{name} <{email}>"),
        (None, Some(email)) => email,
        _ => {
            let user = var("USER").unwrap_or_else(|| "root".to_string());
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_string());
            return Maintainer {
                line: format!("{user} <{user}@{host}>"),
                default: true,
            };
        }
    };
    Maintainer {
        line,
        default: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_names_become_package_and_plugin_names() {
        assert_eq!(plugin_name("my-disk").unwrap(), "my-disk");
        assert_eq!(plugin_name("my_disk").unwrap(), "my-disk");
        for bad in ["MyDisk", "rustshim", "a", "disk.x"] {
            assert!(plugin_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            package_name(Kind::Plugin, "my-disk"),
            "nbdkit-plugin-my-disk"
        );
        assert_eq!(package_name(Kind::Filter, "invert"), "nbdkit-filter-invert");
    }
}
