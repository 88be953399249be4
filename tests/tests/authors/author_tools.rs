//! The plugin author's tools, used as an author would: `cargo xtask new-plugin` writes a crate
//! outside this workspace, and that crate builds, passes its own `cargo test` (which serves it
//! with the real nbdkit through `rustshim-harness`), and serves through the shim as it is.

use std::path::Path;
use std::process::Command;

use rustshim_tests::*;

/// The generated crate's name (its cdylib is `libmy_disk.so`).
const NAME: &str = "my-disk";

/// `cargo xtask new-plugin NAME --path DIR`.
fn new_plugin(name: &str, dir: &Path) -> Run {
    xtask_new_plugin(name, dir, &[])
}

/// `cargo` in `dir`.
fn cargo(dir: &Path) -> Command {
    cargo_in(dir)
}

#[test]
fn a_new_plugin_crate_passes_its_own_tests_and_serves() {
    let dir = authors_dir().join(NAME);
    let _ = std::fs::remove_dir_all(&dir);
    let out = new_plugin(NAME, &dir).ok();
    assert!(
        out.stdout.contains("created the plugin crate"),
        "{}",
        out.stdout
    );
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "tests/serve.rs",
        "README.md",
        ".gitignore",
    ] {
        assert!(dir.join(file).is_file(), "{file} was not written");
    }

    // The crate's own `cargo test`: its tests start the real nbdkit with this shim.
    let shim = shim();
    let out = run_cargo(
        cargo(&dir)
            .arg("test")
            .env("CARGO_TARGET_DIR", authors_target())
            .env("RUSTSHIM_SHIM", &shim),
    )
    .ok();
    assert!(
        out.stderr.contains("Running tests/serve.rs"),
        "{}",
        out.stderr
    );
    let results: Vec<&str> = out
        .stdout
        .lines()
        .filter(|line| line.starts_with("test result:"))
        .collect();
    assert!(
        !results.is_empty() && results.iter().all(|line| line.contains(" 0 failed")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("test the_disk_has_the_size_given ... ok"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("test reads_back_what_was_written_and_zeroes_elsewhere ... ok"),
        "{}",
        out.stdout
    );

    // Built as its README says, and served through the shim as it is.
    run_cargo(
        cargo(&dir)
            .args(["build", "--quiet"])
            .env("CARGO_TARGET_DIR", authors_target()),
    )
    .ok();
    let so = authors_target().join("debug").join("libmy_disk.so");
    assert!(so.is_file(), "{} was not built", so.display());
    let out = nbdinfo(&["--size"], &[so.to_str().unwrap(), "2M"]).ok();
    assert_eq!(out.stdout.trim(), (2 << 20).to_string());
    let out = nbdsh(
        &[format!("plugin={}", so.display()), "size=1M".into()],
        "h.pwrite(b'rustshim' * 512, 4096)\n\
         assert h.pread(4096, 4096) == b'rustshim' * 512\n\
         assert h.pread(4096, 0) == bytes(4096)\n\
         print(h.get_size(), h.can_trim(), h.can_zero(), h.can_multi_conn())",
    )
    .ok();
    assert_eq!(out.stdout.trim(), "1048576 True True True");
}

#[test]
fn new_plugin_refuses_bad_names_and_used_directories() {
    let temp = temp_dir("new-plugin");
    let out = new_plugin("My_Disk", &temp.join("a")).failed();
    assert!(
        out.stderr.contains("'My_Disk' is not a valid plugin name"),
        "{}",
        out.stderr
    );
    assert!(!temp.join("a").exists());

    std::fs::write(temp.join("notes.txt"), "mine").unwrap();
    let out = new_plugin("ok-name", temp.path()).failed();
    assert!(
        out.stderr.contains("exists and is not empty"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 1);
}

#[test]
fn a_new_filter_crate_passes_its_own_tests_and_serves() {
    let dir = authors_dir().join("my-filter");
    let _ = std::fs::remove_dir_all(&dir);
    let out = xtask_new_plugin("my-filter", &dir, &["--filter"]).ok();
    assert!(
        out.stdout.contains("created the filter crate"),
        "{}",
        out.stdout
    );

    // Its own `cargo test`, with this checkout's shim and memory plugin.
    let out = run(cargo(&dir)
        .arg("test")
        .env("CARGO_TARGET_DIR", authors_target())
        .env("RUSTSHIM_SHIM", shim())
        .env("RUSTSHIM_PLUGIN_PATH", shim().parent().unwrap()))
    .ok();
    for test in [
        "the_client_reads_back_what_it_wrote",
        "the_layer_below_sees_the_data_inverted",
        "a_bad_value_stops_nbdkit_with_a_message",
    ] {
        assert!(
            out.stdout.contains(&format!("test {test} ... ok")),
            "{}",
            out.stdout
        );
    }

    // Served as its README says, in front of a C plugin.
    let so = authors_target().join("debug").join("libmy_filter.so");
    let args = rustshim_tests::filters::nbdkit_words(&[
        rustshim_tests::filters::rust_filter(),
        "memory".into(),
        "1M".into(),
        format!("filter={}", so.display()),
    ]);
    let out =
        rustshim_tests::filters::nbdsh_with(&args, "print(h.pread(4, 0) == b'\\xff' * 4)").ok();
    assert_eq!(out.stdout.trim(), "True");
}
