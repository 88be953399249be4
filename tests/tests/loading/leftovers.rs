//! Nothing of the shim's outlives nbdkit: every refusal of the README's table, a normal exit and
//! a SIGKILL of a serving nbdkit leave `$TMPDIR` as empty as they found it (the private copies
//! of a plugin live in memory, not in files).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustshim_tests::filters::nbdkit_words;
use rustshim_tests::fixtures::{build_plugin, ApiCopy, MINIMAL_PLUGIN};
use rustshim_tests::*;

/// `nbdkit SHIM args...`.
fn shim_words(args: &[String]) -> Vec<String> {
    let mut words = vec![shim().display().to_string()];
    words.extend_from_slice(args);
    nbdkit_words(&words)
}

fn leftovers(tmpdir: &Path) -> Vec<String> {
    std::fs::read_dir(tmpdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Runs `nbdkit -U - SHIM args --run true` with an empty `TMPDIR` of its own; returns whether
/// it succeeded, and what it left there.
fn run_in_empty_tmpdir(args: &[String]) -> (bool, Vec<String>, String) {
    let tmp = temp_dir("tmpdir");
    let argv = shim_words(args);
    let out = run(command(&argv[0])
        .env("TMPDIR", tmp.path())
        .arg("-U")
        .arg("-")
        .args(&argv[1..])
        .args(["--run", "true"]));
    (out.status.success(), leftovers(tmp.path()), out.stderr)
}

#[test]
fn no_refusal_leaves_anything_in_tmpdir() {
    let dir = temp_dir("refusals");
    let null = plugin("null").display().to_string();
    let empty = dir.join("empty.so");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.join("text.so");
    std::fs::write(&text, "not a plugin\n").unwrap();
    let truncated = dir.join("truncated.so");
    std::fs::write(&truncated, &std::fs::read(&null).unwrap()[..200_000]).unwrap();
    let open_dir = temp_dir("writable");
    let writable = open_dir.join("libnull.so");
    std::fs::copy(&null, &writable).unwrap();
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o666)).unwrap();
    let same = ApiCopy {
        version: "1.0.0",
        edits: &[],
    };
    let no_root = build_plugin(
        "no_root_module",
        &same,
        &MINIMAL_PLUGIN.replace("export_plugin!(Fixture);", ""),
        &[],
    );
    let v2 = build_plugin(
        "api_v2",
        &ApiCopy {
            version: "2.0.0",
            edits: &[],
        },
        MINIMAL_PLUGIN,
        &[],
    );
    let p = |path: &dyn AsRef<Path>| format!("plugin={}", path.as_ref().display());
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("missing", vec!["plugin=/nonexistent/lib.so".into()]),
        ("directory", vec![p(&dir.path())]),
        ("empty", vec![p(&empty)]),
        ("text", vec![p(&text)]),
        ("truncated", vec![p(&truncated)]),
        (
            "C plugin",
            vec!["plugin=/usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-null-plugin.so".into()],
        ),
        (
            "foreign library",
            vec!["plugin=/lib/x86_64-linux-gnu/libz.so.1".into()],
        ),
        ("no root module", vec![p(&no_root)]),
        ("other major", vec![p(&v2)]),
        ("executable", vec!["plugin=/usr/bin/nbdkit".into()]),
        ("writable by others", vec![p(&writable)]),
        ("short name", vec!["plugin=no-such-plugin".into()]),
        ("twice", vec![p(&null), p(&null)]),
        ("no plugin", vec!["size=1M".into()]),
        ("unknown key", vec![p(&null), "colour=blue".into()]),
        ("bad value", vec![p(&null), "size=lots".into()]),
        ("shim key", vec![p(&null), "rustshim-x=1".into()]),
        ("reload=", vec![p(&null), "reload=sometimes".into()]),
        (
            "missing size=",
            vec![format!("plugin={}", plugin("memory").display())],
        ),
        (
            "config fails",
            vec![
                format!("plugin={}", plugin("test").display()),
                "fail=config".into(),
                "size=1M".into(),
            ],
        ),
        (
            "get_ready fails",
            vec![
                format!("plugin={}", plugin("test").display()),
                "fail=get_ready".into(),
            ],
        ),
    ];
    let mut bad = Vec::new();
    for (what, args) in &cases {
        let (ok, left, stderr) = run_in_empty_tmpdir(args);
        assert!(!ok, "{what}: expected a refusal");
        if !left.is_empty() {
            bad.push(format!("{what}: left {left:?} ({})", stderr.trim()));
        }
    }
    // And a plugin that serves, then exits normally.
    let (ok, left, stderr) = run_in_empty_tmpdir(&[p(&null)]);
    assert!(ok, "{stderr}");
    if !left.is_empty() {
        bad.push(format!("a normal exit: left {left:?}"));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn a_killed_nbdkit_leaves_nothing_either() {
    let tmp = temp_dir("killed");
    let dir = temp_dir("killed-plugin");
    let watched = dir.join("libnull.so");
    install_build(&plugin("null"), &watched, Install::RenameOver);
    let socket = tmp.join("nbd.sock");
    let argv = shim_words(&[
        format!("plugin={}", watched.display()),
        "reload=watch".into(),
        "size=1M".into(),
    ]);
    // nbdkit's stderr goes to a file outside its TMPDIR: the reload line is waited for there.
    let log_path = dir.join("nbdkit.log");
    // Written once nbdkit serves, after the shim's `after_fork` armed the watch.
    let pidfile = dir.join("nbdkit.pid");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = rustshim_harness::command("nbdkit")
        .env("TMPDIR", tmp.path())
        .args(["-f", "-U"])
        .arg(&socket)
        .arg("-P")
        .arg(&pidfile)
        .args(&argv[1..])
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(&pidfile).is_ok_and(|pid| pid.ends_with('\n')) {
        assert!(std::time::Instant::now() < deadline, "nbdkit did not start");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // A reload too, so that a second generation is loaded.
    install_build(
        &rebuilt(&plugin("null"), &dir, "b"),
        &watched,
        Install::RenameOver,
    );
    // The second generation is loaded (its copy mapped) before the kill, or this tests nothing
    // more than a kill of a server that never reloaded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let reloaded = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains("rustshim: reload: ")) {
            break line.to_string();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "nbdkit exited before reloading:\n{log}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "nbdkit did not reload within 30 s:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(
        reloaded.contains(&format!("generation 2 from {}", watched.display())),
        "{reloaded}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_file(&socket).unwrap();
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}
