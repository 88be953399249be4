//! Loading a plugin file and routing the command line: every bad input gets one clear line
//! naming the file (or key) and the cause, and nbdkit exits non-zero without a signal.

use std::os::unix::fs::PermissionsExt;

use rustshim_tests::fixtures::{build_plugin, ApiCopy, MINIMAL_PLUGIN};
use rustshim_tests::*;

/// Runs `nbdkit SHIM args --run true` and expects a clean failure whose stderr has a line
/// containing every one of `needles`. Returns that line.
#[track_caller]
fn refused<S: AsRef<str>>(args: &[S], needles: &[&str]) -> String {
    let mut argv: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
    argv.extend(["--run".into(), "true".into()]);
    let out = nbdkit(&argv).failed();
    let line = out
        .stderr
        .lines()
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| {
            panic!(
                "no stderr line contains all of {needles:?}:\n{}",
                out.stderr
            )
        });
    assert!(
        line.starts_with("nbdkit: "),
        "error comes through nbdkit's log: {line}"
    );
    assert!(
        !out.stderr.contains("panicked at"),
        "no raw panic output:\n{}",
        out.stderr
    );
    line.to_string()
}

#[test]
fn missing_file() {
    refused(
        &["plugin=/nonexistent/libnope.so"],
        &["'/nonexistent/libnope.so'", "does not exist"],
    );
}

#[test]
fn a_directory() {
    let dir = TempDir::new("dir");
    refused(
        &[format!("plugin={}", dir.path().display())],
        &[&dir.path().display().to_string(), "is a directory"],
    );
}

#[test]
fn empty_text_and_truncated_files() {
    let dir = TempDir::new("files");
    let empty = dir.join("empty.so");
    std::fs::write(&empty, b"").unwrap();
    refused(
        &[format!("plugin={}", empty.display())],
        &["empty.so", "is empty"],
    );

    let text = dir.join("notes.so");
    std::fs::write(&text, "this is not a plugin\n").unwrap();
    refused(
        &[format!("plugin={}", text.display())],
        &["notes.so", "not a shared object"],
    );

    // Cut inside the loaded segments (a debug build is mostly debug info at the end).
    let good = std::fs::read(plugin("null")).unwrap();
    let truncated = dir.join("truncated.so");
    std::fs::write(&truncated, &good[..200_000]).unwrap();
    refused(
        &[format!("plugin={}", truncated.display())],
        &["truncated.so", "is truncated"],
    );

    // An executable is an ELF file but not a library.
    refused(
        &["plugin=/usr/bin/nbdkit"],
        &["/usr/bin/nbdkit", "position-independent executable"],
    );
}

#[test]
fn a_c_nbdkit_plugin_is_named_as_such() {
    let c_plugin = "/usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-null-plugin.so";
    let line = refused(
        &[format!("plugin={c_plugin}")],
        &[c_plugin, "is a C nbdkit plugin"],
    );
    assert!(
        line.contains(&format!("nbdkit {c_plugin}")),
        "suggests running it directly: {line}"
    );
}

#[test]
fn an_unrelated_shared_library() {
    refused(
        &["plugin=/lib/x86_64-linux-gnu/libz.so.1"],
        &["libz.so.1", "not a rustshim plugin"],
    );
}

#[test]
fn a_rust_cdylib_without_the_root_module() {
    let src = MINIMAL_PLUGIN.replace("export_plugin!(Fixture);", "");
    let so = build_plugin(
        "no_root_module",
        &ApiCopy {
            version: "1.0.0",
            edits: &[],
        },
        &src,
        &[],
    );
    refused(
        &[format!("plugin={}", so.display())],
        &[
            "libno_root_module.so",
            "not a rustshim plugin",
            "export_plugin!",
        ],
    );
}

#[test]
fn a_plugin_built_against_another_major_version() {
    let so = build_plugin(
        "api_v2",
        &ApiCopy {
            version: "2.0.0",
            edits: &[],
        },
        MINIMAL_PLUGIN,
        &[],
    );
    let line = refused(
        &[format!("plugin={}", so.display())],
        &["libapi_v2.so", "rustshim-plugin-api 2.0.0"],
    );
    assert!(
        line.contains("1.0.0") && line.contains("rebuild"),
        "names both versions and the fix: {line}"
    );
}

#[test]
fn a_changed_abi_without_a_version_bump() {
    // The field's type changes, and the adapter with it, so the copy still compiles.
    let edits = [
        (
            "src/abi/mod.rs",
            "    pub implemented: u64,",
            "    pub implemented: u32,",
        ),
        (
            "src/adapter/mod.rs",
            "implemented: T::CALLBACKS.bits(),",
            "implemented: T::CALLBACKS.bits() as u32,",
        ),
    ];
    let so = build_plugin(
        "api_changed",
        &ApiCopy {
            version: "1.0.0",
            edits: &edits,
        },
        MINIMAL_PLUGIN,
        &[],
    );
    let line = refused(
        &[format!("plugin={}", so.display())],
        &["libapi_changed.so", "ABI incompatible"],
    );
    assert!(
        line.contains("u64") && line.contains("u32"),
        "says what differs: {line}"
    );
}

#[test]
fn an_unreadable_file() {
    if nix::unistd::geteuid().is_root() {
        // Root reads any file; run the check as a user who cannot.
        let dir = TempDir::new("unreadable");
        let so = dir.join("libnull.so");
        std::fs::copy(plugin("null"), &so).unwrap();
        std::fs::set_permissions(&so, std::fs::Permissions::from_mode(0o000)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let argv = nbdkit_argv(&[
            format!("plugin={}", so.display()),
            "--run".into(),
            "true".into(),
        ]);
        let out = run(command("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(&argv))
        .failed();
        assert!(
            out.stderr.lines().any(|l| l.contains("libnull.so")
                && l.contains("cannot be read")
                && l.contains("ermission denied")),
            "{}",
            out.stderr
        );
    }
}

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
    let argv = nbdkit_argv(&[format!("plugin={}", plugin("null").display())]);
    let bad = std::ffi::OsStr::from_bytes(b"size=1\xffM");
    let out = run(command(&argv[0])
        .args(&argv[1..])
        .arg(bad)
        .args(["--run", "true"]))
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
    let argv = nbdkit_argv(&["plugin=librustshim_null.so", "size=1M", "--dump-plugin"]);
    let out = run(command(&argv[0])
        .args(&argv[1..])
        .current_dir(null.parent().unwrap()))
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

#[test]
fn a_fixture_built_in_its_own_workspace_serves_data() {
    let so = build_plugin(
        "fixture_ok",
        &ApiCopy {
            version: "1.0.0",
            edits: &[],
        },
        MINIMAL_PLUGIN,
        &["--release"],
    );
    let out = nbdsh(
        &[format!("plugin={}", so.display())],
        "print(h.pread(4, 0).hex())",
    )
    .ok();
    assert_eq!(out.stdout.trim(), "5a5a5a5a");
}
