//! `null` against nbdkit's C null plugin, side by side on the same inputs: what `nbdinfo`
//! reports, the answer to every kind of request, and the refusals. The C plugin is nbdkit's
//! own, of the version the suite runs (the host's, or `$RUSTSHIM_ROOT`'s).

use rustshim_tests::twin::*;
use rustshim_tests::*;

#[test]
fn nbdinfo_sees_the_same_export() {
    for size in ["0", "1M", "9223372036854775807"] {
        let twin = Twin::new("null", &[size]);
        let [c, rust] = twin.both().map(|(_, s)| nbdinfo_json(&[], s));
        assert!(c.contains("\"export-size\""), "{c}");
        assert_eq!(c, rust, "size={size}: C (left) and rustshim (right) differ");
        let [c, rust] = twin.both().map(|(_, s)| nbdinfo_json(&["--list"], s));
        assert_eq!(c, rust, "size={size} --list");
    }
}

#[test]
fn every_request_gets_the_same_answer() {
    let [c, rust] = requests(&Twin::new("null", &["size=1M"]));
    assert!(c.contains("pread-back "), "{c}");
    assert_eq!(c, rust, "C (left) and rustshim (right)");
}

#[test]
fn both_refuse_the_same_bad_parameters() {
    // nbdkit's own message for a bad size, the one line of both (the shim adds none).
    let [c, rust] = both_refuse(&Twin::new("null", &["size=lots"]));
    // (nbdkit 1.32: "… string (lots)", 1.42 on: "… string: lots".)
    assert!(c.contains("could not parse size string"), "{c}");
    assert_eq!(rust, c);
    let [c, rust] = both_refuse(&Twin::new("null", &["colour=red"]));
    assert!(c.contains("colour"), "{c}");
    assert!(rust.contains("unknown parameter 'colour'"), "{rust}");
}

#[test]
fn dump_plugin_says_the_same_about_the_plugin() {
    let twin = Twin::new("null", &[] as &[&str]);
    let [c, rust] = twin.both().map(|(_, s)| dump_plugin_lines(s));
    // The shim is the plugin nbdkit sees; it names the Rust plugin's own facts with a prefix.
    for line in [
        "magic_config_key=size",
        "thread_model=parallel",
        "name=null",
    ] {
        assert!(c.iter().any(|l| l == line), "C: {c:?}");
        let ours = format!("rustshim_plugin_{line}");
        assert!(rust.contains(&ours), "rustshim: {rust:?}");
    }
    assert!(rust.contains(&format!("rustshim_server_version={}", nbdkit_version())));
}
