//! The page lock's loom model (plugin-api/src/page_lock/loom_model.rs) runs as part of the
//! suite: every interleaving of a few threads taking the store's page lock finds no lost
//! wake-up and no broken exclusion. And it would: the same model, run on a copy of the lock
//! with a lost wake-up put in, fails.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rustshim_tests::*;

/// `RUSTFLAGS="--cfg loom" cargo test -p rustshim-plugin-api --release --lib loom` in the
/// workspace `dir`, in a target directory of its own (other flags: other artifacts).
fn run_model(dir: &Path) -> Run {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    // A cargo build of its own (loom and a release plugin-api, cold on a new machine) before the
    // model runs: far longer than one nbdkit's limit, and on a busy machine longer still.
    let out = run_within(
        Command::new(cargo)
            .args([
                "test",
                "-p",
                "rustshim-plugin-api",
                "--release",
                "--lib",
                "loom",
            ])
            .env("RUSTFLAGS", "--cfg loom")
            .env("CARGO_TARGET_DIR", workspace().join("target/loom"))
            .current_dir(dir),
        Duration::from_secs(900),
    );
    eprintln!("loom model in {}: {:?}", dir.display(), started.elapsed());
    out
}

#[test]
fn the_model_of_the_page_lock_finds_no_lost_wake_up() {
    let out = run_model(&workspace()).ok();
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("test result: ok. 4 passed"),
        "the four loom models did not all run:\n{text}"
    );
}

/// The mutation: the writer that takes the lock clears the sleepers' bit, so a reader asleep
/// behind it is never woken (what a forgotten bit in one compare-and-swap does).
const LOST_WAKE_UP: (&str, &str) = (
    "(s & !NEXT_WRITER) | WRITER, Acquire",
    "(s & !(NEXT_WRITER | SLEEPING)) | WRITER, Acquire",
);

/// The mutant's copy of `plugin-api`.
const API: &str = "api-lost-wake-up";

#[test]
fn the_model_catches_an_injected_lost_wake_up() {
    let root = workspace();
    let dir = root.join("target/loom-mutant");
    let _ = std::fs::remove_dir_all(&dir);
    // Named apart from `plugin-api`: cargo names a path package's artifacts by its path in the
    // workspace, and the unchanged model's share the target directory.
    copy_dir(&root.join("plugin-api"), &dir.join(API));
    let lock = dir.join(API).join("src/page_lock.rs");
    let text = std::fs::read_to_string(&lock).unwrap();
    assert!(text.contains(LOST_WAKE_UP.0), "mutation site not found");
    std::fs::write(&lock, text.replacen(LOST_WAKE_UP.0, LOST_WAKE_UP.1, 1)).unwrap();
    // The workspace's shared settings, with plugin-api and its macros as the only members.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let shared = manifest[manifest.find("[workspace.package]").unwrap()..]
        .replace("path = \"plugin-api", &format!("path = \"{API}"));
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[workspace]\nresolver = \"2\"\nmembers = [\"{API}\", \"{API}/macros\"]\n\n{shared}"
        ),
    )
    .unwrap();
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let out = run_model(&dir);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(!out.status.success(), "the mutant passed:\n{text}");
    assert!(text.contains("deadlock"), "no lost wake-up found:\n{text}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dst = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&entry.path(), &dst);
            }
        } else {
            std::fs::copy(entry.path(), dst).unwrap();
        }
    }
}
