//! Debian roots holding newer nbdkits, for the version matrix (`cargo xtask test --nbdkit`).
//!
//! Each nbdkit series we support past the host's (Debian 12: 1.32) is the one a Debian release
//! ships, installed from Debian's own packages into a root made with `debootstrap
//! --variant=minbase`: trixie (Debian 13) has 1.42, forky has 1.48. The shim and the plugins are
//! built once on the host; the harness runs nbdkit and the clients inside a root (its
//! `RUSTSHIM_ROOT`), with the host's data directories at the same paths.
//!
//! A root is cached in `/var/cache/rustshim/roots/SUITE` and reused while the package list it
//! was made with ([`deps::PACKAGES`]) is unchanged; a changed list makes it anew. It is built
//! under another name and renamed into place, so an interrupted build leaves no half root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::workspace::run;
use crate::{deps, Result};

/// Where the roots are kept.
const CACHE: &str = "/var/cache/rustshim/roots";
/// Written last into a finished root: the package list it was made with.
const STAMP: &str = ".rustshim-packages";

/// One nbdkit the suite can run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Server {
    /// What `--nbdkit` calls it.
    pub key: &'static str,
    /// The Debian release whose nbdkit it is; `None`: the host's own.
    pub suite: Option<&'static str>,
    /// The debootstrap script for the suite, when Debian 12's debootstrap has none of its name.
    pub script: Option<&'static str>,
}

/// Every nbdkit we support, oldest first.
pub const SERVERS: &[Server] = &[
    Server {
        key: "system",
        suite: None,
        script: None,
    },
    Server {
        key: "1.42",
        suite: Some("trixie"),
        script: None,
    },
    Server {
        key: "1.48",
        suite: Some("forky"),
        script: Some("sid"),
    },
];

/// The servers `--nbdkit WHICH` names: one key, or `all`.
pub fn select(which: &str) -> Result<Vec<Server>> {
    if which == "all" {
        return Ok(SERVERS.to_vec());
    }
    SERVERS
        .iter()
        .find(|server| server.key == which)
        .map(|server| vec![*server])
        .ok_or_else(|| {
            let keys: Vec<&str> = SERVERS.iter().map(|s| s.key).collect();
            format!("--nbdkit {which}: not one of {} or all", keys.join(", "))
        })
}

/// The root of `server`, made if it is missing or stale; `None` for the host's nbdkit.
pub fn ensure(server: &Server) -> Result<Option<PathBuf>> {
    let Some(suite) = server.suite else {
        return Ok(None);
    };
    let root = Path::new(CACHE).join(suite);
    let wanted = stamp_text();
    if fs::read_to_string(root.join(STAMP)).ok().as_deref() == Some(wanted.as_str()) {
        println!(
            "roots: {suite} (nbdkit {}) is ready in {}",
            server.key,
            root.display()
        );
        return Ok(Some(root));
    }
    make(server, suite, &root, &wanted)?;
    Ok(Some(root))
}

fn stamp_text() -> String {
    let mut packages: Vec<&str> = deps::PACKAGES.to_vec();
    packages.sort_unstable();
    packages.join("\n") + "\n"
}

fn make(server: &Server, suite: &str, root: &Path, stamp: &str) -> Result {
    deps::ensure_host(&["debootstrap"])?;
    let started = Instant::now();
    let building = root.with_extension("building");
    if building.exists() {
        fs::remove_dir_all(&building)
            .map_err(|e| format!("cannot remove {}: {e}", building.display()))?;
    }
    fs::create_dir_all(&building)
        .map_err(|e| format!("cannot create {}: {e}", building.display()))?;
    let mirror = host_mirror()?;
    println!(
        "roots: making {} (Debian {suite}, for nbdkit {}) from {mirror}",
        root.display(),
        server.key
    );
    let mut debootstrap = Command::new("debootstrap");
    debootstrap
        .args(["--variant=minbase", suite])
        .arg(&building)
        .arg(&mirror);
    if let Some(script) = server.script {
        debootstrap.arg(Path::new("/usr/share/debootstrap/scripts").join(script));
    }
    run(&format!("debootstrap {suite}"), &mut debootstrap)?;

    let in_root = |program: &str| {
        let mut cmd = rustshim_harness::command_in(Some(&building), program);
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .current_dir("/");
        cmd
    };
    // A root is a test bed, refreshed when its package list changes, not a system kept up to
    // date: a mirror frozen at a date (a snapshot) must still serve it after its Release
    // files' Valid-Until has passed.
    let apt_conf = building.join("etc/apt/apt.conf.d/99rustshim");
    fs::write(&apt_conf, "Acquire::Check-Valid-Until \"false\";\n")
        .map_err(|e| format!("cannot write {}: {e}", apt_conf.display()))?;
    run(
        "apt-get update in the root",
        in_root("apt-get").arg("update"),
    )?;
    run(
        "apt-get install in the root",
        in_root("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(deps::PACKAGES),
    )?;
    run("apt-get clean in the root", in_root("apt-get").arg("clean"))?;
    fs::write(building.join(STAMP), stamp)
        .map_err(|e| format!("cannot write {}: {e}", building.join(STAMP).display()))?;
    if root.exists() {
        fs::remove_dir_all(root).map_err(|e| format!("cannot remove {}: {e}", root.display()))?;
    }
    fs::rename(&building, root)
        .map_err(|e| format!("cannot rename {} into place: {e}", building.display()))?;
    println!(
        "roots: {} ready in {:.0} s",
        root.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The Debian mirror the host's apt uses (its first `URIs:` or `deb` line), so a root comes
/// from wherever this machine gets its packages.
fn host_mirror() -> Result<String> {
    let mut sources: Vec<PathBuf> = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        sources.extend(more);
    }
    for path in sources {
        let name = path.to_string_lossy();
        if !(name.ends_with(".list") || name.ends_with(".sources")) {
            continue;
        }
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        for line in text.lines().map(str::trim) {
            let uri = if let Some(rest) = line.strip_prefix("URIs:") {
                rest.split_whitespace().next()
            } else if let Some(rest) = line.strip_prefix("deb ") {
                rest.split_whitespace().find(|word| word.contains("://"))
            } else {
                None
            };
            if let Some(uri) = uri.filter(|uri| uri.trim_end_matches('/').ends_with("/debian")) {
                return Ok(uri.to_string());
            }
        }
    }
    Err(
        "cannot find the Debian mirror in /etc/apt/sources.list{,.d}: set one up for apt first"
            .into(),
    )
}

/// `package=version` of the packages a "Tested with" table names, as installed in `root` (or on
/// the host).
pub fn versions(root: Option<&Path>) -> Result<Vec<(String, String)>> {
    let out = rustshim_harness::command_in(root, "dpkg-query")
        .args([
            "-W",
            "-f=${Package} ${Version}\\n",
            "nbdkit",
            "libnbd-bin",
            "qemu-utils",
        ])
        .current_dir("/")
        .output()
        .map_err(|e| format!("cannot run dpkg-query: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(p, v)| (p.to_string(), v.to_string()))
        .collect())
}
