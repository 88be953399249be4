//! The Debian packages the shim is built, tested and demonstrated with.

use std::process::Command;

use crate::workspace::run;
use crate::Result;

/// Everything `build`, `test`, `install` and `demo` rely on from the system.
const PACKAGES: &[&str] = &[
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
    // psktool, to make keys for the TLS tests.
    "gnutls-bin",
];

/// Installs whichever of [`PACKAGES`] are missing (as root), or says how to.
pub fn ensure() -> Result {
    // Without dpkg this is not Debian or Ubuntu: we cannot check, so trust the user.
    if Command::new("dpkg-query")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "deps: no dpkg-query (not Debian?); make sure these are installed: {}",
            PACKAGES.join(" ")
        );
        return Ok(());
    }
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|package| !installed(package))
        .collect();
    if missing.is_empty() {
        println!(
            "deps: all {} system packages are installed ({})",
            PACKAGES.len(),
            PACKAGES.join(", ")
        );
        return Ok(());
    }

    let install = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
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
