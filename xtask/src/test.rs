//! `cargo xtask test [--nbdkit WHICH]`: fmt, clippy and the build once, on the host; then the
//! whole suite against each nbdkit asked for, with the same shim and plugin files.

use std::ffi::OsString;
use std::time::Instant;

use crate::workspace::{cargo, run};
use crate::{deps, roots, Result};

pub fn test(which: &str, args: &[OsString]) -> Result {
    let servers = roots::select(which)?;
    deps::ensure()?;
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
    // Every root is made before any leg runs, so a failed download stops the run early.
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
        let started = Instant::now();
        run(&format!("the suite on nbdkit {}", server.key), &mut cmd)?;
        let versions = roots::versions(root.as_deref())?;
        legs.push((server.key, started.elapsed(), versions));
    }
    println!("==> all {steps} steps passed");
    println!("\n| nbdkit | libnbd | qemu | suite time |\n|---|---|---|---|");
    for (key, took, versions) in &legs {
        let version = |package: &str| {
            versions
                .iter()
                .find(|(p, _)| p == package)
                .map_or("?", |(_, v)| v.as_str())
                .to_string()
        };
        println!(
            "| {} ({key}) | {} | {} | {:.0} s |",
            version("nbdkit"),
            version("libnbd-bin"),
            version("qemu-utils"),
            took.as_secs_f64()
        );
    }
    Ok(())
}
