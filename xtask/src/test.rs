//! `cargo xtask test [-- ARGS]`: fmt, clippy, the build of every target and the whole suite,
//! in that order, stopping at the first step that fails.

use std::ffi::OsString;

use crate::deps;
use crate::workspace::{cargo, run};
use crate::Result;

pub fn test(args: &[OsString]) -> Result {
    deps::ensure()?;
    let steps: [(&str, &[&str]); 4] = [
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
        ("test", &["test", "--workspace"]),
    ];
    for (number, (name, step)) in steps.iter().enumerate() {
        let mut cmd = cargo();
        cmd.args(*step);
        if *name == "test" {
            cmd.args(args);
        }
        let line: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
        println!(
            "==> [{}/{}] {name}: cargo {}",
            number + 1,
            steps.len(),
            line.join(" ")
        );
        run(&format!("test step `{name}`"), &mut cmd)?;
    }
    println!("==> all {} steps passed", steps.len());
    Ok(())
}
