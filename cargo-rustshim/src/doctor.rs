//! `cargo rustshim doctor`: what a plugin author's setup is made of, checked the way it will be
//! used, each problem with the exact command that fixes it. Version skew between the tool, the
//! library and the server, with no clear fix, is what authors of cargo-pgrx extensions trip on
//! most; here each mismatch names its fix.
//!
//! What is checked: nbdkit (its version, plugin and filter directories) and the NBD clients the
//! tests use; the shim `nbdkit rustshim` runs (its version and ABI version, from its own
//! `--dump-plugin`); the Debian roots of the other nbdkits; and, in a plugin or filter crate,
//! the version of `rustshim-plugin-api` it resolves to against the shim's ABI, and whether the
//! shim loads its latest build (which is also the permission check: the shim's own verdict).

use std::path::{Path, PathBuf};

use rustshim_harness::{find_shim, nbdkit_program, FILTER_SHIM_INSTALLED, SHIM_ENV};

use crate::deps::AUTHOR_PACKAGES;
use crate::new::{Kind, API_REQUIREMENT};
use crate::plugin_crate::PluginCrate;
use crate::roots;
use crate::Result;

/// The findings: what was seen, and the problems with their fixes.
#[derive(Default)]
struct Report {
    problems: usize,
}

impl Report {
    fn ok(&self, what: &str, seen: &str) {
        println!("ok       {what}: {seen}");
    }

    fn note(&self, what: &str, seen: &str) {
        println!("note     {what}: {seen}");
    }

    fn problem(&mut self, what: &str, why: &str, fix: &str) {
        self.problems += 1;
        println!("PROBLEM  {what}: {why}\n         fix: {fix}");
    }
}

pub fn doctor(manifest: Option<&Path>) -> Result {
    let mut report = Report::default();
    let nbdkit = check_nbdkit(&mut report);
    check_clients(&mut report);
    let shim = check_shim(&mut report, nbdkit.is_some());
    if let Some(nbdkit) = &nbdkit {
        check_filter_shim(&mut report, nbdkit);
    }
    check_roots(&report);
    let in_crate = manifest.is_some() || Path::new("Cargo.toml").is_file();
    if in_crate {
        check_crate(&mut report, manifest, shim.as_ref());
    } else {
        report.note(
            "crate",
            "not in a plugin crate's directory: run doctor there to check it against the shim",
        );
    }
    match report.problems {
        0 => {
            println!("doctor: no problems found");
            Ok(())
        }
        n => Err(format!("{n} problem(s) found (each with its fix above)")),
    }
}

/// What nbdkit says of itself.
struct Nbdkit {
    version: String,
    plugindir: PathBuf,
    filterdir: PathBuf,
}

fn check_nbdkit(report: &mut Report) -> Option<Nbdkit> {
    let program = nbdkit_program();
    let config = rustshim_harness::command(&program)
        .arg("--dump-config")
        .output()
        .ok()
        .filter(|out| out.status.success());
    let Some(config) = config else {
        report.problem(
            "nbdkit",
            &format!("`{} --dump-config` does not run", program.display()),
            "apt-get install nbdkit",
        );
        return None;
    };
    let config = String::from_utf8_lossy(&config.stdout).into_owned();
    let field = |key: &str| {
        config
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("?")
            .to_string()
    };
    let nbdkit = Nbdkit {
        version: field("version"),
        plugindir: PathBuf::from(field("plugindir")),
        filterdir: PathBuf::from(field("filterdir")),
    };
    report.ok(
        "nbdkit",
        &format!(
            "{} ({}), plugindir {}, filterdir {}",
            nbdkit.version,
            program.display(),
            nbdkit.plugindir.display(),
            nbdkit.filterdir.display()
        ),
    );
    Some(nbdkit)
}

fn check_clients(report: &mut Report) {
    let nbdinfo = rustshim_harness::command("nbdinfo")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    let nbd_module = rustshim_harness::command("python3")
        .args(["-c", "import nbd"])
        .output()
        .is_ok_and(|out| out.status.success());
    if nbdinfo && nbd_module {
        report.ok("clients", "nbdinfo and python3's nbd module (libnbd)");
    } else {
        report.problem(
            "clients",
            "the tests drive nbdkit with nbdinfo and python3's nbd module, and one is missing",
            &format!("apt-get install {}", AUTHOR_PACKAGES.join(" ")),
        );
    }
}

/// The shim's own account of itself: `--dump-plugin` without a plugin.
struct Shim {
    path: PathBuf,
    api_version: String,
}

fn check_shim(report: &mut Report, have_nbdkit: bool) -> Option<Shim> {
    if !have_nbdkit {
        return None;
    }
    let path = match find_shim() {
        Ok(path) => path,
        Err(e) => {
            let why = e.to_string();
            let why = why.strip_prefix("rustshim-harness: ").unwrap_or(&why);
            let fix = if std::env::var_os(SHIM_ENV).is_some_and(|v| !v.is_empty()) {
                "unset RUSTSHIM_SHIM (to use the installed shim), or set it to the path of a \
                 built shim"
            } else {
                "apt-get install ./nbdkit-rustshim-plugin_VERSION_amd64.deb (made by `cargo \
                 xtask package` in an nbdkit-rustshim checkout), or `cargo xtask install` there"
            };
            report.problem("shim", why, fix);
            return None;
        }
    };
    let dump = rustshim_harness::command(nbdkit_program())
        .arg(&path)
        .arg("--dump-plugin")
        .output();
    let text = dump
        .as_ref()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
    };
    let (Some(version), Some(api_version)) =
        (field("rustshim_version"), field("rustshim_api_version"))
    else {
        let said = dump
            .map(|out| String::from_utf8_lossy(&out.stderr).trim().to_string())
            .unwrap_or_else(|e| e.to_string());
        report.problem(
            "shim",
            &format!("{} does not load in nbdkit: {said}", path.display()),
            "reinstall the shim (apt-get install --reinstall nbdkit-rustshim-plugin, or `cargo \
             xtask install` in the checkout)",
        );
        return None;
    };
    report.ok(
        "shim",
        &format!(
            "{} version {version}, ABI (rustshim-plugin-api) {api_version}",
            path.display()
        ),
    );
    Some(Shim { path, api_version })
}

fn check_filter_shim(report: &mut Report, nbdkit: &Nbdkit) {
    let filter_shim = nbdkit.filterdir.join(FILTER_SHIM_INSTALLED);
    if filter_shim.is_file() {
        report.ok("filter shim", &filter_shim.display().to_string());
    } else {
        report.note(
            "filter shim",
            &format!(
                "no {} (needed for Rust filters only: it comes with the shim's package)",
                filter_shim.display()
            ),
        );
    }
}

fn check_roots(report: &Report) {
    for server in roots::SERVERS {
        let Some(root) = server.root else { continue };
        match roots::cached(&root) {
            Some(dir) => report.ok(
                &format!("nbdkit {}", server.key),
                &format!(
                    "Debian root {} (for `cargo rustshim test --nbdkit {}`)",
                    dir.display(),
                    server.key
                ),
            ),
            None => report.note(
                &format!("nbdkit {}", server.key),
                &format!(
                    "no Debian root yet: `cargo rustshim test --nbdkit {}` makes it (as root, \
                     with debootstrap; a few minutes, once)",
                    server.key
                ),
            ),
        }
    }
}

fn check_crate(report: &mut Report, manifest: Option<&Path>, shim: Option<&Shim>) {
    let krate = match PluginCrate::find(manifest) {
        Ok(krate) => krate,
        Err(e) => {
            report.problem(
                "crate",
                &format!("{e} (cargo's words are above)"),
                "if cargo cannot find rustshim-plugin-api on crates.io, the crates are not \
                 published yet: run `cargo xtask crates` in an nbdkit-rustshim checkout and add \
                 the [patch.crates-io] lines it prints to ~/.cargo/config.toml",
            );
            return;
        }
    };
    report.ok(
        "crate",
        &format!(
            "{} {} ({}), {}",
            krate.name,
            krate.version,
            krate.kind.as_str(),
            krate.manifest.display()
        ),
    );
    let Some(api) = &krate.api_version else {
        report.problem(
            "crate",
            "it does not depend on rustshim-plugin-api",
            &format!("cargo add rustshim-plugin-api@{API_REQUIREMENT}"),
        );
        return;
    };
    let Some(shim) = shim else {
        report.note(
            "crate",
            &format!("built against rustshim-plugin-api {api}; no shim to check it with"),
        );
        return;
    };
    let major = |v: &str| v.split('.').next().unwrap_or("").to_string();
    let minor = |v: &str| {
        v.split('.')
            .nth(1)
            .and_then(|m| m.parse::<u64>().ok())
            .unwrap_or(0)
    };
    if major(api) != major(&shim.api_version) {
        report.problem(
            "ABI",
            &format!(
                "the crate uses rustshim-plugin-api {api} and the shim speaks {}: another major \
                 version, which the shim refuses",
                shim.api_version
            ),
            &format!(
                "cargo add rustshim-plugin-api@{}.{} (or install a shim of ABI {}.x)",
                major(&shim.api_version),
                minor(&shim.api_version),
                major(api)
            ),
        );
    } else if minor(api) > minor(&shim.api_version) {
        report.note(
            "ABI",
            &format!(
                "the crate uses rustshim-plugin-api {api}, newer than the shim's {}: it loads \
                 unless it implements callbacks added since (then: install a newer shim, or \
                 `cargo update -p rustshim-plugin-api --precise {}`)",
                shim.api_version, shim.api_version
            ),
        );
    } else {
        report.ok(
            "ABI",
            &format!(
                "the crate uses rustshim-plugin-api {api}; the shim speaks {}",
                shim.api_version
            ),
        );
    }
    check_build_loads(report, &krate, shim);
}

/// Whether the shim loads the crate's latest debug build: its own verdict, so a refused
/// permission or ABI shows as the shim says it.
fn check_build_loads(report: &mut Report, krate: &PluginCrate, shim: &Shim) {
    let build = krate.debug_build();
    if !build.is_file() {
        report.note(
            "build",
            &format!(
                "no {} yet: `cargo build`, then doctor checks the shim loads it",
                build.display()
            ),
        );
        return;
    }
    let mut cmd = rustshim_harness::command(nbdkit_program());
    match krate.kind {
        Kind::Plugin => cmd
            .arg(&shim.path)
            .arg(format!("plugin={}", build.display()))
            .arg("--dump-plugin"),
        Kind::Filter => cmd
            .args(["-U", "-", "--filter"])
            .arg(&shim.path)
            .arg("null")
            .arg(format!("filter={}", build.display()))
            .args(["--run", "true"]),
    };
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => {
            report.problem(
                "build",
                &format!("cannot run nbdkit: {e}"),
                "apt-get install nbdkit",
            );
            return;
        }
    };
    if out.status.success() {
        report.ok("build", &format!("the shim loads {}", build.display()));
        return;
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let line = said
        .lines()
        .find(|line| line.contains("refused") || line.contains("error"))
        .unwrap_or_else(|| said.trim())
        .trim()
        .to_string();
    let fix = match permission_fix(&line) {
        Some(fix) => fix,
        None => "see the shim's words above; `cargo build` again after fixing".to_string(),
    };
    report.problem("build", &line, &fix);
}

/// The command that fixes a permission refusal the shim gave: `chmod go-w 'DIR'` for a
/// directory others can write, `chown` for one that belongs to another user.
fn permission_fix(refusal: &str) -> Option<String> {
    let quoted = |after: &str| {
        let rest = refusal.split(after).nth(1)?;
        let rest = rest.strip_prefix('\'')?;
        Some(rest[..rest.find('\'')?].to_string())
    };
    if refusal.contains("is writable by group or others") {
        let path = quoted("its directory ").or_else(|| quoted("its file "))?;
        return Some(format!("chmod go-w '{path}'"));
    }
    if refusal.contains("belongs to another user") {
        let path = quoted("its directory ").or_else(|| quoted("its file "))?;
        return Some(format!(
            "chown \"$(id -un)\" '{path}' (or build somewhere you own)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_refusals_get_their_command() {
        let line = "nbdkit: error: rustshim: plugin file '/w/t/libx.so' refused: its directory \
                    '/w/t' is writable by group or others (mode 777), so someone else could \
                    change the code nbdkit runs; fix the permissions, or add \
                    allow-insecure-plugin=true";
        assert_eq!(permission_fix(line).as_deref(), Some("chmod go-w '/w/t'"));
        let line = "plugin file '/w/libx.so' refused: its file '/w/libx.so' belongs to another \
                    user (uid 7), so ...";
        assert!(permission_fix(line)
            .unwrap()
            .starts_with("chown \"$(id -un)\" '/w/libx.so'"));
        assert_eq!(permission_fix("something else"), None);
    }
}
