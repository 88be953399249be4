//! `cargo xtask new-plugin`: no generated file names an absolute path (the crate finds this
//! checkout by relative paths), and a generated crate built with `CARGO_TARGET_DIR` set to this
//! checkout's target directory reuses what the checkout compiled (abi_stable and the rest),
//! as its README says.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rustshim_tests::*;

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Every file under `dir`, recursively, but `target/`.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                out.extend(files(&path));
            }
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_generated_crate_has_no_absolute_paths_and_shares_a_target_directory() {
    let parent = temp_dir("author-new-plugin");
    let dir = std::fs::canonicalize(parent.path())
        .unwrap()
        .join("shared-demo");
    let repo = std::fs::canonicalize(workspace()).unwrap();
    let out = xtask_new_plugin("shared-demo", &dir, &[]).ok();
    assert!(
        out.stdout.contains("created the plugin crate"),
        "{}",
        out.stdout
    );

    let written = files(&dir);
    assert!(written.len() >= 5, "{written:?}");
    for file in &written {
        let text = std::fs::read_to_string(file).unwrap();
        for absolute in [&repo, &dir] {
            // Only as the tail of a relative path (`../../work/repo` from /tmp/x/y).
            let absolute = absolute.to_str().unwrap();
            for (at, _) in text.match_indices(absolute) {
                assert!(
                    text[..at].ends_with(".."),
                    "{} names {absolute}: {}",
                    file.display(),
                    text[at.saturating_sub(40)..].lines().next().unwrap_or("")
                );
            }
        }
    }
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("/plugin-api\" }"), "{manifest}");

    // Built in the checkout's target directory: the dependencies the checkout compiled are
    // reused, only the crate itself (and the path crates it shares) compile.
    let target = target_dir().parent().unwrap().to_path_buf();
    let out = run_within(
        cargo()
            .arg("build")
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &target),
        Duration::from_secs(900),
    )
    .ok();
    let compiled: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("Compiling "))
        .collect();
    assert!(
        compiled.iter().any(|l| l.contains("shared-demo")),
        "{}",
        out.stderr
    );
    assert!(
        !compiled.iter().any(|l| l.contains("abi_stable")) && compiled.len() <= 4,
        "the checkout's dependencies were compiled again: {compiled:#?}"
    );
    let so = target.join("debug").join("libshared_demo.so");
    assert!(so.is_file(), "{}", so.display());
    let _ = std::fs::remove_file(so);
}
