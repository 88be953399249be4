//! Loading a plugin file: every bad file (missing, a directory, empty, not a shared object,
//! truncated, an executable, a C plugin, an unrelated library, a Rust cdylib that is not a
//! plugin, another major version, a changed ABI, unreadable) gets one clear line naming the file
//! and the cause, and nbdkit exits non-zero without a signal; a good one built elsewhere serves.

use std::os::unix::fs::PermissionsExt;

use rustshim_tests::fixtures::{build_plugin, other_major_plugin, ApiCopy, MINIMAL_PLUGIN};
use rustshim_tests::*;

#[test]
fn missing_file() {
    refused(
        &["plugin=/nonexistent/libnope.so"],
        &["'/nonexistent/libnope.so'", "does not exist"],
    );
}

#[test]
fn a_directory() {
    let dir = temp_dir("dir");
    refused(
        &[format!("plugin={}", dir.path().display())],
        &[&dir.path().display().to_string(), "is a directory"],
    );
}

#[test]
fn empty_text_and_truncated_files() {
    let dir = temp_dir("files");
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
            version: API_VERSION,
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
    let so = other_major_plugin();
    let line = refused(
        &[format!("plugin={}", so.display())],
        &["libapi_v2.so", "rustshim-plugin-api 2.0.0"],
    );
    assert!(
        line.contains(API_VERSION) && line.contains("rebuild"),
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
            version: API_VERSION,
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
    // Root reads any file: nbdkit runs as nobody, an ordinary user, who cannot read it (one of
    // root's, mode 0600, and one of its own, mode 0000).
    let dir = temp_dir("unreadable");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (name, owner, mode) in [("libroot.so", 0, 0o600), ("libnobody.so", NOBODY, 0o000)] {
        let so = dir.join(name);
        std::fs::copy(plugin("null"), &so).unwrap();
        std::fs::set_permissions(&so, std::fs::Permissions::from_mode(mode)).unwrap();
        nix::unistd::chown(&so, Some(nix::unistd::Uid::from_raw(owner)), None).unwrap();
        let out = run_nbdkit(
            shim_nbdkit_as_nobody()
                .arg(format!("plugin={}", so.display()))
                .args(["--run", "true"]),
        );
        one_refusal(
            &out,
            &[
                &format!("plugin file '{}'", so.display()),
                "cannot be read",
                "ermission denied",
            ],
        );
    }
}

#[test]
fn a_fixture_built_in_its_own_workspace_serves_data() {
    let so = build_plugin(
        "fixture_ok",
        &ApiCopy {
            version: API_VERSION,
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
