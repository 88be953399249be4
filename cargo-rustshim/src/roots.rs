//! Debian roots holding newer nbdkits, for the version matrix (`cargo xtask test --nbdkit` and
//! `cargo rustshim test --nbdkit`).
//!
//! Each nbdkit series we support past the host's (Debian 12: 1.32) is the one a Debian release
//! ships, installed from Debian's own packages into a root made with `debootstrap
//! --variant=minbase`: trixie (Debian 13) has 1.42, forky has 1.48. The shim and the plugins are
//! built once on the host; the harness runs nbdkit and the clients inside a root (its
//! `RUSTSHIM_ROOT`), with the host's data directories at the same paths.
//!
//! Two more roots, fresh Debian 12 and 13 systems with little but nbdkit, are where the tests
//! install the Debian package ([`PACKAGE_ROOTS`]).
//!
//! A root is kept in [`dir`] (`/var/cache/rustshim/roots/NAME`, or `$RUSTSHIM_ROOTS/NAME`) and
//! reused while the package list it was made with ([`deps::PACKAGES`] for the nbdkit roots) is
//! unchanged; a changed list makes it anew. It is built under another name and renamed into
//! place, so an interrupted build leaves no half root. CI points `RUSTSHIM_ROOTS` at an empty
//! directory, so every run makes its roots as a new machine would.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::cmd::run;
use crate::{deps, Result};

/// Where the roots are kept unless [`ROOTS_ENV`] says otherwise.
const CACHE: &str = "/var/cache/rustshim/roots";
/// The environment variable naming another directory for the roots.
pub const ROOTS_ENV: &str = "RUSTSHIM_ROOTS";

/// The directory holding the roots: `$RUSTSHIM_ROOTS`, or [`CACHE`].
pub fn dir() -> PathBuf {
    std::env::var_os(ROOTS_ENV).map_or_else(|| PathBuf::from(CACHE), PathBuf::from)
}
/// Written last into a finished root: the package list it was made with.
const STAMP: &str = ".rustshim-packages";

/// One nbdkit the suite can run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Server {
    /// What `--nbdkit` calls it.
    pub key: &'static str,
    /// The root it runs in; `None`: the host's own nbdkit.
    pub root: Option<Root>,
}

/// A Debian root: a release made with `debootstrap --variant=minbase`, and what is installed in
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Root {
    /// Its directory's name in [`dir`].
    pub name: &'static str,
    /// The Debian release.
    pub suite: &'static str,
    /// The debootstrap script for the suite, when Debian 12's debootstrap has none of its name.
    pub script: Option<&'static str>,
    /// The packages installed in it.
    pub packages: &'static [&'static str],
    /// What it is for, in messages.
    pub purpose: &'static str,
}

/// Every nbdkit we support, oldest first.
pub const SERVERS: &[Server] = &[
    Server {
        key: "system",
        root: None,
    },
    Server {
        key: "1.42",
        root: Some(Root {
            name: "trixie",
            suite: "trixie",
            script: None,
            packages: deps::PACKAGES,
            purpose: "nbdkit 1.42",
        }),
    },
    Server {
        key: "1.48",
        root: Some(Root {
            name: "forky",
            suite: "forky",
            script: Some("sid"),
            packages: deps::PACKAGES,
            purpose: "nbdkit 1.48",
        }),
    },
];

/// What a fresh root for the package has besides minbase: what the package depends on, a client
/// to try it with, and `man`.
const FRESH_PACKAGES: &[&str] = &["nbdkit", "libnbd-bin", "man-db"];

/// Fresh Debian 12 and 13 systems to install the Debian package into (`cargo xtask package`,
/// tests/tests/authors/package.rs): nothing but what it depends on, a client and `man`.
pub const PACKAGE_ROOTS: &[Root] = &[
    Root {
        name: "bookworm-package",
        suite: "bookworm",
        script: None,
        packages: FRESH_PACKAGES,
        purpose: "the package on Debian 12",
    },
    Root {
        name: "trixie-package",
        suite: "trixie",
        script: None,
        packages: FRESH_PACKAGES,
        purpose: "the package on Debian 13",
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

/// `cargo xtask roots WHICH`: makes (or checks) the roots of a server key, of `package`
/// ([`PACKAGE_ROOTS`]), or of `all` of them.
pub fn make_roots(which: &str) -> Result {
    let mut roots: Vec<Root> = Vec::new();
    if which == "all" || which == "package" {
        roots.extend(PACKAGE_ROOTS);
    }
    if which != "package" {
        let servers = select(which).map_err(|_| {
            let keys: Vec<&str> = SERVERS
                .iter()
                .filter(|s| s.root.is_some())
                .map(|s| s.key)
                .collect();
            format!(
                "roots {which}: not one of {}, package or all",
                keys.join(", ")
            )
        })?;
        roots.extend(servers.iter().filter_map(|server| server.root));
    }
    roots
        .iter()
        .try_for_each(|root| ensure_root(root).map(drop))
}

/// The root of `server`, made if it is missing or stale; `None` for the host's nbdkit.
pub fn ensure(server: &Server) -> Result<Option<PathBuf>> {
    server.root.as_ref().map(ensure_root).transpose()
}

/// `root`'s directory if it is made and up to date.
pub fn cached(root: &Root) -> Option<PathBuf> {
    let dir = dir().join(root.name);
    let current = fs::read_to_string(dir.join(STAMP)).ok()? == stamp_text(root.packages);
    current.then_some(dir)
}

/// `root`'s directory, made if it is missing or stale.
pub fn ensure_root(root: &Root) -> Result<PathBuf> {
    let dir = dir().join(root.name);
    if cached(root).is_none() {
        make(root, &dir, &stamp_text(root.packages))?;
    }
    println!(
        "roots: {} (Debian {}, for {}) is ready in {}",
        root.name,
        root.suite,
        root.purpose,
        dir.display()
    );
    Ok(dir)
}

fn stamp_text(packages: &[&str]) -> String {
    let mut packages: Vec<&str> = packages.to_vec();
    packages.sort_unstable();
    packages.join("\n") + "\n"
}

fn make(root: &Root, dir: &Path, stamp: &str) -> Result {
    let suite = root.suite;
    deps::ensure_host(&["debootstrap"])?;
    let started = Instant::now();
    let building = dir.with_extension("building");
    if building.exists() {
        fs::remove_dir_all(&building)
            .map_err(|e| format!("cannot remove {}: {e}", building.display()))?;
    }
    fs::create_dir_all(&building)
        .map_err(|e| format!("cannot create {}: {e}", building.display()))?;
    let mirror = host_mirror()?;
    println!(
        "roots: making {} (Debian {suite}, for {}) from {mirror}",
        dir.display(),
        root.purpose
    );
    let mut debootstrap = Command::new("debootstrap");
    debootstrap
        .args(["--variant=minbase", suite])
        .arg(&building)
        .arg(&mirror);
    if let Some(script) = root.script {
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
            .args(root.packages),
    )?;
    run("apt-get clean in the root", in_root("apt-get").arg("clean"))?;
    fs::write(building.join(STAMP), stamp)
        .map_err(|e| format!("cannot write {}: {e}", building.join(STAMP).display()))?;
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
    }
    fs::rename(&building, dir)
        .map_err(|e| format!("cannot rename {} into place: {e}", building.display()))?;
    println!(
        "roots: made {} in {:.0} s",
        dir.display(),
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

/// Makes every child this process starts through the harness (nbdkit, the clients, valgrind)
/// run against the nbdkit `which` names: for `system` nothing changes; otherwise its root is made
/// if needed and set as the harness's root. Call before any thread is started.
pub fn enter_for_this_process(which: &str) -> Result {
    let servers = select(which)?;
    let [server] = servers.as_slice() else {
        return Err(format!("--nbdkit {which}: name one nbdkit, not all"));
    };
    if let Some(root) = ensure(server)? {
        println!("nbdkit {}: children run in {}", server.key, root.display());
        std::env::set_var(rustshim_harness::ROOT_ENV, root);
    }
    Ok(())
}
