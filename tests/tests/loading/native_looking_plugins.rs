//! A Rust plugin installed as if it were a C plugin: a copy of the shim named
//! `nbdkit-NAME-plugin.so` in a plugin directory, and the Rust plugin as `rustshim/` beside it
//! (`librustshim_NAME.so`), runs as `nbdkit NAME [args]`: nbdkit calls it NAME in its messages,
//! `--dump-plugin` and `--help`, bare arguments go to the plugin's magic key, and `plugin=` is
//! refused. Here the plugin directory is a scratch one, so the copy is named by its path (as
//! nbdkit takes any plugin whose name has a `/`).

use std::path::PathBuf;

use rustshim_tests::*;

/// A scratch plugin directory with the shim as `nbdkit-NAME-plugin.so` and the workspace's
/// plugin `plugin` as `rustshim/librustshim_NAME.so`; returns the directory and the copy's path.
fn install_as(name: &str, plugin_crate: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    std::fs::create_dir(dir.path().join("rustshim")).unwrap();
    let copy = dir.path().join(format!("nbdkit-{name}-plugin.so"));
    std::fs::copy(shim(), &copy).unwrap();
    std::fs::copy(
        plugin(plugin_crate),
        dir.path().join(format!("rustshim/librustshim_{name}.so")),
    )
    .unwrap();
    (dir, copy)
}

#[test]
fn a_copy_named_for_the_plugin_serves_it_under_that_name() {
    let (_dir, copy) = install_as("rsnull", "null");
    // The bare argument is null's magic key, the size.
    let out = run(command("nbdkit")
        .arg("-U")
        .arg("-")
        .arg(&copy)
        .arg("2M")
        .arg("--run")
        .arg("nbdinfo --size \"$uri\""))
    .ok();
    assert_eq!(out.stdout.trim(), "2097152");

    let dump = run(command("nbdkit").arg(&copy).arg("--dump-plugin"))
        .ok()
        .stdout;
    for line in ["name=rsnull", "rustshim_plugin_name=null"] {
        assert!(dump.lines().any(|l| l == line), "{line} in:\n{dump}");
    }
    let help = run(command("nbdkit").arg(&copy).arg("--help")).ok().stdout;
    assert!(
        help.contains("plugin: rsnull (nbdkit rsnull plugin"),
        "{help}"
    );
    assert!(help.contains("reload=watch"), "{help}");
    assert!(!help.contains("plugin=PATH"), "{help}");

    let out = run(command("nbdkit")
        .arg(&copy)
        .arg("plugin=/somewhere/else.so")
        .arg("--run")
        .arg("true"))
    .failed();
    assert!(
        out.stderr.contains(
            "this is the nbdkit plugin 'rsnull' (the rustshim shim installed as \
             nbdkit-rsnull-plugin.so), which serves the Rust plugin 'rsnull' and takes no plugin="
        ),
        "{}",
        out.stderr
    );
}

/// nbdkit's own messages about a connection carry the plugin's name (`nbdkit: rstest.2: error:`
/// on 1.32, `nbdkit: rstest[1]: error:` on newer ones).
#[test]
fn nbdkits_messages_name_the_plugin() {
    let (_dir, copy) = install_as("rstest", "test");
    let out = run(command("nbdkit")
        .arg("-U")
        .arg("-")
        .arg(&copy)
        .arg("fail=pread")
        .arg("--run")
        .arg("nbdsh -u \"$uri\" -c 'h.pread(512, 0)'"))
    .failed();
    assert!(
        out.stderr.lines().any(|l| l.starts_with("nbdkit: rstest")
            && l.ends_with("error: test: injected failure in pread")),
        "{}",
        out.stderr
    );
}

/// The name only counts in nbdkit's plugin-name form; the shim under its own names is the
/// shim, whatever it is called otherwise.
#[test]
fn other_file_names_are_the_plain_shim() {
    let dir = TempDir::new().unwrap();
    for name in [
        "nbdkit-rustshim-plugin.so",
        "libnbdkit_rustshim_plugin.so",
        "shim.so",
    ] {
        let copy = dir.path().join(name);
        std::fs::copy(shim(), &copy).unwrap();
        let dump = run(command("nbdkit")
            .arg(&copy)
            .arg(format!("plugin={}", plugin("null").display()))
            .arg("--dump-plugin"))
        .ok()
        .stdout;
        assert!(
            dump.lines().any(|l| l == "name=rustshim"),
            "{name}:\n{dump}"
        );
    }
}
