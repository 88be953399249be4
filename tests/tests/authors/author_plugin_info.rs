//! What a plugin tells about itself: `--dump-plugin` lines a plugin cannot forge (a field with
//! `=` or a blank in its key, or a line break in its value, is left out with one line naming
//! it), and `nbdkit rustshim plugin=X --help` showing the plugin's own `CONFIG_HELP` after the
//! shim's keys. On every nbdkit of the matrix, through the harness's `--dump-plugin` helper.

use rustshim_harness::{PluginDump, ServerBuilder};
use rustshim_tests::*;

/// `--dump-plugin` of the test plugin with `extra` arguments, through the harness.
fn dump(extra: &[String]) -> PluginDump {
    ServerBuilder::new()
        .shim(shim())
        .timeout(TIMEOUT)
        .arg(test_plugin())
        .args(extra)
        .dump_plugin()
        .unwrap()
}

/// `dump_field=LEN:KEYVALUE`: the test plugin's `dump_plugin` writes that field.
fn field(key: &str, value: &str) -> String {
    format!("dump_field={}:{key}{value}", key.len())
}

#[test]
fn dump_plugin_fields_cannot_forge_lines() {
    let good = dump(&[field("test_extra", "a=b c"), field("test_empty", "")]);
    assert_eq!(good.get("test_dump"), Some("42"));
    assert_eq!(good.get("test_extra"), Some("a=b c"));
    assert_eq!(
        good.plugin_fields(),
        [
            ("test_dump".to_string(), "42".to_string()),
            ("test_extra".into(), "a=b c".into()),
            ("test_empty".into(), String::new()),
        ]
    );
    assert_eq!(good.stderr, "", "nbdkit {}", nbdkit_version());
    let version = good
        .get("rustshim_plugin_version")
        .expect("the shim's line")
        .to_string();

    // Each forgery is left out, with one error line naming its key; the real lines stay.
    for (key, value, why) in [
        ("rustshim_plugin_version=9", "", "a key cannot contain '='"),
        (
            "test x",
            "1",
            "a key cannot contain blanks or control characters",
        ),
        (
            "test\nrustshim_plugin_version",
            "9",
            "a key cannot contain blanks or control characters",
        ),
        (
            "test_note",
            "1\nrustshim_plugin_version=9",
            "a value cannot contain a line break",
        ),
        ("", "9", "the key is empty"),
    ] {
        let out = dump(&[field(key, value)]);
        assert_eq!(
            out.get("rustshim_plugin_version"),
            Some(version.as_str()),
            "{key:?}={value:?}"
        );
        assert_eq!(
            out.plugin_fields(),
            [("test_dump".to_string(), "42".to_string())],
            "{key:?}={value:?} is left out"
        );
        assert_eq!(
            out.stderr,
            format!(
                "nbdkit: error: rustshim: dump_plugin: the plugin's line for key '{}' is left \
                 out: {why}\n",
                key.escape_debug()
            ),
            "{key:?}={value:?} on nbdkit {}",
            nbdkit_version()
        );
    }
}

#[test]
fn help_with_a_plugin_shows_its_own_keys_after_the_shims() {
    let out = run_nbdkit(shim_nbdkit().args([test_plugin(), "--help".into()])).ok();
    let plugin_file = plugin("test");
    // nbdkit prints its usage, then the shim's section: its description, keys, and the plugin.
    let section = out
        .stdout
        .split_once("plugin: rustshim (nbdkit Rust plugin shim)\n")
        .unwrap_or_else(|| panic!("no shim section:\n{}", out.stdout))
        .1;
    for (n, needle) in [
        "plugin=PATH|NAME".to_string(),
        "reload=watch".into(),
        "allow-insecure-plugin=true".into(),
        format!(
            "\n\nThe Rust plugin 'test', version 0.1.0 ({}):\n\
             An in-memory disk that implements every callback and traces each call.\n\
             size=<SIZE>  Size of the disk (default 1M).\n",
            plugin_file.display()
        ),
    ]
    .iter()
    .enumerate()
    {
        assert!(
            section.contains(needle),
            "{n}: {needle:?} on nbdkit {}:\n{section}",
            nbdkit_version()
        );
    }
    // The same with the plugin as a bare argument and nbdkit options before it.
    let bare = run_nbdkit(
        shim_nbdkit()
            .nbdkit_args(["-f", "-U", "/nonexistent/socket"])
            .args([
                plugin_file.display().to_string(),
                "1M".into(),
                "--help".into(),
            ]),
    )
    .ok();
    assert!(
        bare.stdout.contains("The Rust plugin 'test'"),
        "{}",
        bare.stdout
    );
    // A plugin that cannot be loaded: the shim's help, and why the plugin's is missing.
    let missing = run_nbdkit(shim_nbdkit().args(["plugin=/nonexistent/libx.so", "--help"])).ok();
    assert!(
        missing.stdout.contains(
            "The plugin '/nonexistent/libx.so' could not be loaded to show its parameters: \
             plugin file '/nonexistent/libx.so' does not exist"
        ),
        "{}",
        missing.stdout
    );
    // Without a plugin: the shim's keys alone.
    let alone = run_nbdkit(shim_nbdkit().arg("--help")).ok();
    assert!(alone.stdout.contains("reload=watch"));
    assert!(!alone.stdout.contains("The Rust plugin '"));
    assert!(!alone.stdout.contains("could not be loaded"));
}
