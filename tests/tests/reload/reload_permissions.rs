//! Hot reload checks the permissions of every new build, as loading checks the first (README,
//! "Which plugin files are loaded"): a new build that is writable by group or others, or owned by
//! another user, is refused with one line in nbdkit's log, and the generation serving keeps
//! serving (a client still reads its data); a good build after them is taken. For the plugin
//! (`reload=watch`) and for a Rust filter (`filter-reload=watch`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustshim_tests::filters::*;
use rustshim_tests::*;

/// Puts `build` at `watched` as a build lands (copied beside it, then renamed over it), with
/// `mode`, owned by `owner` (root when `None`).
fn land(build: &Path, watched: &Path, mode: u32, owner: Option<u32>) {
    let tmp = watched.with_extension("so.landing");
    std::fs::copy(build, &tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
    if let Some(uid) = owner {
        nix::unistd::chown(&tmp, Some(nix::unistd::Uid::from_raw(uid)), None).unwrap();
    }
    std::fs::rename(&tmp, watched).unwrap();
}

/// The bad builds: (what, mode, owner, what the line must say).
fn bad_builds() -> Vec<(&'static str, u32, Option<u32>, String)> {
    assert!(
        nix::unistd::geteuid().is_root(),
        "giving a file away needs root (the suite runs as root)"
    );
    vec![
        (
            "group-writable",
            0o664,
            None,
            "is writable by group or others (mode 664)".to_string(),
        ),
        (
            "world-writable",
            0o646,
            None,
            "is writable by group or others (mode 646)".to_string(),
        ),
        (
            "owned-by-nobody",
            0o644,
            Some(NOBODY),
            format!("belongs to another user (uid {NOBODY})"),
        ),
    ]
}

/// Lands each bad build of `build` on `watched` and asserts: one line, an error naming the file
/// and the cause, saying generation 1 keeps serving, and nothing else in the log; `reads` (a
/// client) still gets `expected`, the data of generation 1.
fn refuse_each_bad_build(
    server: &Server,
    dir: &TempDir,
    build: &Path,
    watched: &Path,
    kind: &str,
    reads: &dyn Fn() -> String,
    expected: &str,
) {
    for (n, (what, mode, owner, why)) in bad_builds().into_iter().enumerate() {
        let before = server.log().lines().count();
        land(&rebuilt(build, dir, what), watched, mode, owner);
        // The shim's next reload line, whichever it is (a generation loaded, or a refusal).
        let line = server.wait_for_log("rustshim: reload", n + 1).unwrap();
        assert_eq!(reads(), expected, "{what}: generation 1 no longer serves");
        let log = server.log();
        let new: Vec<&str> = log.lines().skip(before).collect();
        assert_eq!(new, [line.as_str()], "{what}: one line, nothing else");
        assert!(is_error_line(&line), "{what}: an error line: {line}");
        for needle in [
            format!("reload of '{}' refused", watched.display()),
            "generation 1 keeps serving".to_string(),
            format!("{kind} file '{}' refused", watched.display()),
            format!("its file '{}' {why}", watched.display()),
        ] {
            assert!(line.contains(&needle), "{what}: '{needle}' not in: {line}");
        }
    }
}

#[test]
fn reload_refuses_a_new_plugin_build_others_could_change() {
    let dir = temp_dir("reload-perms");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let watched = dir.join("libwatched.so");
    land(&plugin("test"), &watched, 0o644, None);
    let server = serve(
        &[],
        &[
            format!("plugin={}", watched.display()),
            "reload=watch".into(),
        ],
    );
    // The test plugin keeps its data in memory and hands only its size to a new build: what a
    // new connection reads tells the generations apart.
    server
        .client("h.connect_unix(SOCKET)\nh.pwrite(b'gen1', 0)")
        .ok();
    let reads = || {
        server
            .client("h.connect_unix(SOCKET)\nprint(bytes(h.pread(4, 0)))")
            .ok()
            .stdout
            .trim()
            .to_string()
    };
    assert_eq!(reads(), "b'gen1'");
    refuse_each_bad_build(
        &server,
        &dir,
        &plugin("test"),
        &watched,
        "plugin",
        &reads,
        "b'gen1'",
    );
    // A good build is taken: generation 2, with fresh data.
    land(
        &rebuilt(&plugin("test"), &dir, "good"),
        &watched,
        0o644,
        None,
    );
    let line = server.wait_for_log("generation 2 from", 1).unwrap();
    assert!(line.contains("plugin 'test'"), "{line}");
    assert_eq!(reads(), "b'\\x00\\x00\\x00\\x00'");
}

#[test]
fn filter_reload_refuses_a_new_filter_build_others_could_change() {
    let dir = temp_dir("filter-reload-perms");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let watched = dir.join("libwatched.so");
    land(&filter("passthrough"), &watched, 0o644, None);
    let server = serve_words(&nbdkit_words(&[
        rust_filter(),
        "memory".into(),
        "1M".into(),
        format!("filter={}", watched.display()),
        "filter-reload=watch".into(),
    ]));
    // Generation 1 passes the data through; the good build swaps the bytes of each 16-bit word.
    server
        .client("h.connect_uri(URI)\nh.pwrite(b'abcd', 0)")
        .ok();
    let reads = || {
        server
            .client("h.connect_uri(URI)\nprint(bytes(h.pread(4, 0)))")
            .ok()
            .stdout
            .trim()
            .to_string()
    };
    assert_eq!(reads(), "b'abcd'");
    refuse_each_bad_build(
        &server,
        &dir,
        &filter("swab"),
        &watched,
        "filter",
        &reads,
        "b'abcd'",
    );
    land(
        &rebuilt(&filter("swab"), &dir, "good"),
        &watched,
        0o644,
        None,
    );
    let line = server.wait_for_log("generation 2 from", 1).unwrap();
    assert!(line.contains("filter 'swab'"), "{line}");
    assert_eq!(reads(), "b'badc'");
}
