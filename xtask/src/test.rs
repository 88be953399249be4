//! `cargo xtask test [--nbdkit WHICH]`: the system packages and every Debian root the suite
//! reads, then fmt, clippy and the build once, on the host; then the whole suite against each
//! nbdkit asked for, with the same shim and plugin files.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use crate::workspace::{cargo, run, workspace};
use crate::{deps, roots, Result};

pub fn test(which: &str, args: &[OsString]) -> Result {
    let servers = roots::select(which)?;
    deps::ensure()?;
    // Every Debian root the suite reads is made before anything is built or run, whichever
    // nbdkit the legs run: the unit tests measure the headers of 1.42 and 1.48 in them,
    // tests/tests/authors/package.rs installs the package into the fresh Debian 12 and 13 ones, and the
    // author tests run `cargo rustshim test --nbdkit all`.
    roots::make_roots("all")?;
    let checks: [(&str, &[&str]); 3] = [
        ("fmt", &["fmt", "--all", "--", "--check"]),
        (
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        ("build", &["build", "--workspace", "--all-targets"]),
    ];
    let steps = checks.len() + servers.len();
    for (number, (name, step)) in checks.iter().enumerate() {
        let mut cmd = cargo();
        cmd.args(*step);
        println!(
            "==> [{}/{steps}] {name}: cargo {}",
            number + 1,
            step.join(" ")
        );
        run(&format!("test step `{name}`"), &mut cmd)?;
    }
    let roots = servers
        .iter()
        .map(roots::ensure)
        .collect::<Result<Vec<_>>>()?;
    let mut legs = Vec::new();
    for (index, (server, root)) in servers.iter().zip(&roots).enumerate() {
        let mut cmd = cargo();
        cmd.args(["test", "--workspace"]).args(args);
        match root {
            Some(root) => cmd.env(rustshim_harness::ROOT_ENV, root),
            None => cmd.env_remove(rustshim_harness::ROOT_ENV),
        };
        println!(
            "==> [{}/{steps}] test on nbdkit {}: cargo test --workspace{}",
            checks.len() + index + 1,
            server.key,
            match root {
                Some(root) => format!(" (in {})", root.display()),
                None => String::new(),
            }
        );
        // Each leg's children get a TMPDIR of their own, removed afterwards: nbdkit (`-U -`) and
        // libnbd (socket activation) leave empty directories behind in it when a test ends
        // them by a signal, and the suite must not litter /tmp. (What the shim itself leaves is
        // asserted by the tests.) Short, under /tmp: socket paths must fit in 108 bytes.
        let tmpdir = std::env::temp_dir().join(format!(
            "rustshim-suite-{}-{}",
            std::process::id(),
            server.key
        ));
        std::fs::create_dir_all(&tmpdir)
            .map_err(|e| format!("cannot create {}: {e}", tmpdir.display()))?;
        cmd.env("TMPDIR", &tmpdir);
        let started = Instant::now();
        let passed = run(&format!("the suite on nbdkit {}", server.key), &mut cmd);
        let _ = std::fs::remove_dir_all(&tmpdir);
        passed?;
        let versions = roots::versions(root.as_deref())?;
        legs.push((server.key, started.elapsed(), versions));
    }
    println!("==> all {steps} steps passed");
    summarise(&legs)
}

/// One leg of the suite: its nbdkit, how long it took, and the packages it ran with.
type Leg = (&'static str, Duration, Vec<(String, String)>);

/// Each leg's time, and the table of what the suite passed on (recorded when every nbdkit ran).
fn summarise(legs: &[Leg]) -> Result {
    let mut table = String::from("| nbdkit | libnbd | qemu-img |\n|---|---|---|\n");
    for (key, took, versions) in legs {
        let version = |package: &str| {
            versions
                .iter()
                .find(|(p, _)| p == package)
                .map_or("?", |(_, v)| v.as_str())
                .to_string()
        };
        println!(
            "nbdkit {} ({key}): the suite took {:.0} s",
            version("nbdkit"),
            took.as_secs_f64()
        );
        table += &format!(
            "| {} | {} | {} |\n",
            version("nbdkit"),
            version("libnbd-bin"),
            version("qemu-utils")
        );
    }
    println!("\n{table}");
    if legs.len() == roots::SERVERS.len() {
        record_tested_with(&table)?;
    }
    Ok(())
}

/// Writes the table of what the whole suite passed on into docs/nbdkit-versions.md, between its
/// markers.
fn record_tested_with(table: &str) -> Result {
    const BEGIN: &str = "<!-- tested-with: written by `cargo xtask test --nbdkit all` -->\n";
    const END: &str = "<!-- end of tested-with -->";
    let path = workspace().join("docs/nbdkit-versions.md");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        return Err(format!("{} has no tested-with markers", path.display()));
    };
    let updated = format!("{}{BEGIN}{table}{}", &text[..begin], &text[end..]);
    if updated != text {
        std::fs::write(&path, updated)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("docs/nbdkit-versions.md: the tested-with table is updated");
    }
    Ok(())
}
