//! The Debian packages the shim is built, tested and demonstrated with.

use std::process::Command;

use crate::cmd::{is_root, run};
use crate::Result;

/// Everything `build`, `test`, `install` and `demo` rely on from the system; also what each
/// Debian root of the version matrix gets (`roots.rs`).
pub const PACKAGES: &[&str] = &[
    // The server, and <nbdkit-plugin.h> for the shim's struct layout check.
    "nbdkit",
    "nbdkit-plugin-dev",
    // nbdkit's own python plugin, a reference to test and measure the shim against.
    "nbdkit-plugin-python",
    // Clients: nbdinfo, nbdsh, nbdcopy, and the `nbd` python module behind nbdsh and the tests.
    "libnbd-bin",
    "python3-libnbd",
    // qemu-img and qemu-nbd, an independent NBD implementation to check against.
    "qemu-utils",
    // Load generator for exercising and measuring plugins.
    "fio",
    // psktool and certtool, to make keys and certificates for the TLS tests.
    "gnutls-bin",
    // nbdkit under memcheck, and instruction counts (callgrind) in the bench.
    "valgrind",
];

/// What a plugin crate's own tests need (`cargo rustshim test`, `run`): the server, and the
/// clients `rustshim-harness` drives.
pub const AUTHOR_PACKAGES: &[&str] = &["nbdkit", "libnbd-bin", "python3-libnbd"];

/// Installs whichever of [`PACKAGES`] are missing (as root), or says how to.
pub fn ensure() -> Result {
    ensure_host(PACKAGES)
}

/// Installs whichever of `packages` are missing on the host (as root), or says how to.
pub fn ensure_host(packages: &[&str]) -> Result {
    // Without dpkg this is not Debian or Ubuntu: we cannot check, so trust the user.
    if Command::new("dpkg-query")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "deps: no dpkg-query (not Debian?); make sure these are installed: {}",
            packages.join(" ")
        );
        return Ok(());
    }
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| !installed(package))
        .collect();
    if missing.is_empty() {
        println!(
            "deps: all {} system packages are installed ({})",
            packages.len(),
            packages.join(", ")
        );
        return Ok(());
    }

    let install = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !is_root() {
        eprintln!("deps: missing system packages: {}", missing.join(" "));
        eprintln!(
            "deps: run:  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive {install}"
        );
        return Err(format!(
            "{} system packages are missing, and only root can install them",
            missing.len()
        ));
    }

    println!("deps: installing {}", missing.join(" "));
    run("apt-get update", Command::new("apt-get").arg("update"))?;
    run(
        &install,
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )?;
    println!("deps: installed {}", missing.join(" "));
    Ok(())
}

/// Whether dpkg has the package fully installed (not just known, or removed with its config).
fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout == b"install ok installed")
}
