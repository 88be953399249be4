//! Helpers for the filter tests: command lines that stack the Rust filter shim with C filters
//! and plugins, and clients that take any nbdkit command line.

use std::path::{Path, PathBuf};

use super::*;

/// A filter of this workspace by its crate suffix: `filter("delay")` is
/// `librustshim_filter_delay.so`.
pub fn filter(name: &str) -> PathBuf {
    let path = shim().with_file_name(format!("librustshim_filter_{name}.so"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A filter built as an example of the test filter crate (`filters/test/examples/`):
/// `filter_example("filter_generation_1")`.
pub fn filter_example(name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        cargo_build(
            &["-p", "rustshim-filter-test", "--examples"],
            "the test filter's examples",
        )
    });
    let path = target_dir().join("examples").join(format!("lib{name}.so"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// `--filter=SHIM` (the shim file is the plugin shim too).
pub fn rust_filter() -> String {
    format!("--filter={}", shim().display())
}

/// `filter=PATH` of a workspace filter.
pub fn filter_key(name: &str) -> String {
    format!("filter={}", filter(name).display())
}

/// An nbdkit command line: `nbdkit` and `args` as given (filters, plugin, keys).
pub fn nbdkit_words<S: AsRef<str>>(args: &[S]) -> Vec<String> {
    std::iter::once("nbdkit".to_string())
        .chain(args.iter().map(|a| a.as_ref().to_string()))
        .collect()
}

/// nbdkit serving in the background with the command line `words` (from [`nbdkit_words`]: filters,
/// plugin and keys as given, no shim added).
pub fn serve_words(words: &[String]) -> Server {
    ServerBuilder::new()
        .without_shim()
        .args(&words[1..])
        .start()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `nbdkit ARGS... --run true`-style runs: nbdkit with `args` as given.
pub fn nbdkit_plain<S: AsRef<str>>(args: &[S]) -> Run {
    let argv = nbdkit_words(args);
    run(command(&argv[0]).args(&argv[1..]))
}

/// Like [`nbdsh`], for any nbdkit command line (`argv` from [`argv`]).
pub fn nbdsh_with(argv: &[String], script: &str) -> Run {
    let mut full = vec![argv[0].clone(), "-s".into(), "--exit-with-parent".into()];
    full.extend(argv[1..].iter().cloned());
    let program = format!(
        "import nbd, os, sys\nh = nbd.NBD()\nh.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)\nh.connect_command({full:?})\n{script}\n"
    );
    run(command("/usr/bin/python3").arg("-c").arg(program))
}

/// Like [`nbdinfo`], for any nbdkit command line.
pub fn nbdinfo_with(options: &[&str], argv: &[String]) -> Run {
    run(command("nbdinfo")
        .args(options)
        .arg("--")
        .arg("[")
        .arg(&argv[0])
        .arg("--exit-with-parent")
        .args(&argv[1..])
        .arg("]"))
}

/// `nbdinfo`'s lines without the ones that name the socket (so two servers compare).
pub fn info_lines(argv: &[String]) -> Vec<String> {
    let out = nbdinfo_with(&[], argv).ok();
    out.stdout
        .lines()
        .filter(|l| !l.trim_start().starts_with("uri:"))
        .map(str::to_owned)
        .collect()
}

/// The trace lines of a test filter's trace file.
pub fn trace_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}
