//! `cargo xtask fuzz [--cases N] [--seed S] [--race N]`: the suite's mutation test of plugin
//! files (`tests/tests/loading/corrupt_files.rs`) with many more cases than a CI run, and optionally the
//! reload race (`tests/tests/reload/reload_race.rs`) with more tries. Same code, same assertions: no
//! signal, no hang, exit status 1 and one readable line naming the file.

use crate::workspace::{cargo, run};
use crate::Result;

pub fn fuzz(cases: u32, seed: u64, race: Option<u32>) -> Result {
    let mut cmd = cargo();
    cmd.args([
        "test",
        "-p",
        "rustshim-tests",
        "--test",
        "loading",
        "corrupt_files::one_byte_mutations",
        "--",
        "--nocapture",
    ])
    .env("RUSTSHIM_FUZZ_CASES", cases.to_string())
    .env("RUSTSHIM_FUZZ_SEED", seed.to_string());
    println!("==> {cases} one-byte mutations of a plugin file (seed {seed})");
    run("the mutation test", &mut cmd)?;
    if let Some(tries) = race {
        let mut cmd = cargo();
        cmd.args([
            "test",
            "-p",
            "rustshim-tests",
            "--test",
            "reload",
            "reload_race::",
            "--",
            "--nocapture",
        ])
        .env("RUSTSHIM_RACE_TRIES", tries.to_string());
        println!("==> the reload race, {tries} tries");
        run("the reload race", &mut cmd)?;
    }
    Ok(())
}
