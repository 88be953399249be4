//! Routing the command line to the shim and the plugin: `plugin=` or a bare first argument,
//! pairs before `plugin=` replayed after loading, bad keys and values refused with one clear
//! line (nbdkit exits non-zero without a signal), and what `--help` and `--dump-plugin` say.

use rustshim_tests::*;

#[test]
fn plugin_given_twice() {
    let null = plugin("null");
    refused(
        &[
            format!("plugin={}", null.display()),
            format!("plugin={}", null.display()),
        ],
        &["plugin given twice"],
    );
    // A bare argument first, then plugin=.
    refused(
        &[
            null.display().to_string(),
            format!("plugin={}", null.display()),
        ],
        &["plugin given twice"],
    );
}

#[test]
fn no_plugin_at_all() {
    refused(&["size=1M"], &["no plugin given", "plugin=PATH"]);
}

#[test]
fn a_wrong_key_is_refused_by_the_plugin() {
    let null = plugin("null");
    refused(
        &[format!("plugin={}", null.display()), "colour=blue".into()],
        &["unknown parameter 'colour'"],
    );
}

#[test]
fn a_bad_value_is_refused_with_nbdkits_message() {
    let null = plugin("null");
    refused(
        &[format!("plugin={}", null.display()), "size=lots".into()],
        &["lots"],
    );
}

#[test]
fn non_utf8_values_are_refused() {
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"size=1\xffM");
    let out = run_nbdkit(
        shim_nbdkit()
            .arg(format!("plugin={}", plugin("null").display()))
            .arg(bad)
            .args(["--run", "true"]),
    )
    .failed();
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("parameter 'size'") && l.contains("not valid UTF-8")),
        "{}",
        out.stderr
    );
}

#[test]
fn keys_before_plugin_are_replayed_after_loading() {
    let null = plugin("null");
    let out = nbdinfo(
        &["--size"],
        &["size=2M".to_string(), format!("plugin={}", null.display())],
    )
    .ok();
    assert_eq!(out.stdout.trim(), (2 << 20).to_string());
}

#[test]
fn a_relative_plugin_path_is_made_absolute() {
    // From the target directory, a bare file name must not go through the linker's search path.
    let null = plugin("null");
    let out = run_nbdkit(
        shim_nbdkit()
            .args(["plugin=librustshim_null.so", "size=1M", "--dump-plugin"])
            .current_dir(null.parent().unwrap()),
    )
    .ok();
    assert!(
        out.stdout
            .contains(&format!("rustshim_plugin_path={}", null.display())),
        "{}",
        out.stdout
    );
}

#[test]
fn help_documents_the_shims_keys() {
    let out = nbdkit(&["--help"]).ok();
    assert!(out.stdout.contains("plugin=PATH"), "{}", out.stdout);
    assert!(out.stdout.contains("magic key"), "{}", out.stdout);
}

#[test]
fn dump_plugin_describes_the_inner_plugin() {
    let null = plugin("null");
    let out = nbdkit(&[format!("plugin={}", null.display()), "--dump-plugin".into()]).ok();
    for line in [
        "name=rustshim",
        "rustshim_plugin_name=null",
        "rustshim_plugin_version=0.1.0",
        "rustshim_plugin_api_version=1.0.0",
        "rustshim_plugin_magic_config_key=size",
        "rustshim_plugin_panic=unwind",
        "rustshim_has_pread=1",
        "rustshim_has_zero=1",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "missing {line}:\n{}",
            out.stdout
        );
    }
    assert!(
        !out.stdout.contains("rustshim_has_preconnect"),
        "only what the plugin implements"
    );
    assert!(
        out.stdout
            .contains(&format!("rustshim_server_version={}", nbdkit_version())),
        "{}",
        out.stdout
    );
}
