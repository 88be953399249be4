//! `file` against nbdkit's C file plugin, side by side on the same inputs: what `nbdinfo`
//! reports, the answer to every kind of request (and the file each leaves behind), the
//! read-only fallback (a user who may not write the file, a read-only file system), `dir=`,
//! `fd=`, `dirfd=`, `cache=`, `fadvise=`, and the refusals. Where nbdkit's own plugin differs
//! between versions (`fd=`/`dirfd=` are 1.34's, `reduce-memory-pressure=` 1.48's), the test says
//! so for each version; the twin follows nbdkit 1.42's and takes 1.48's new name too.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use rustshim_tests::twin::*;
use rustshim_tests::*;

/// A directory under `/tmp` that any user may enter (the suite's TMPDIR may be private), with
/// `files` of pseudo-random data: (name, length).
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(tag: &str, files: &[(&str, usize)]) -> Files {
        let dir = PathBuf::from(format!("/tmp/rustshim-twin-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for (i, (name, len)) in files.iter().enumerate() {
            let path = dir.join(name);
            std::fs::write(&path, pattern(i as u64 + 1, *len)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        Files { dir }
    }
    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn nbdinfo_sees_the_same_export() {
    let files = Files::new("info", &[("disk.img", 1 << 20), ("odd.img", 12345)]);
    for name in ["disk.img", "odd.img"] {
        let twin = Twin::new("file", &[files.path(name)]);
        let [c, rust] = twin.both().map(|(_, s)| nbdinfo_json(&[], s));
        assert!(c.contains("\"export-size\""), "{c}");
        assert_eq!(c, rust, "{name}: C (left) and rustshim (right) differ");
        let [c, rust] = twin.both().map(|(_, s)| nbdinfo_json(&["--list"], s));
        assert_eq!(c, rust, "{name} --list");
    }
}

/// Each serves its own copy of the same file: the same answers, and the same bytes left in the
/// file; also with `cache=none` and each `fadvise=`.
#[test]
fn every_request_gets_the_same_answer() {
    let size = 1 << 20;
    for extra in [
        &[][..],
        &["cache=none", "fadvise=random"][..],
        &["fadvise=sequential"][..],
        &["cache=default", "fadvise=normal"][..],
    ] {
        let files = Files::new("requests", &[("c.img", size)]);
        std::fs::copy(files.path("c.img"), files.path("r.img")).unwrap();
        let mut answers = Vec::new();
        for (name, which) in [("c.img", 0), ("r.img", 1)] {
            let mut args = vec![files.path(name)];
            args.extend(extra.iter().map(|s| s.to_string()));
            let twin = Twin::new("file", &args);
            let server = if which == 0 { &twin.c } else { &twin.rust };
            answers.push(stdio_client(server, REQUESTS).ok().stdout);
        }
        assert!(answers[0].contains("pread-back "), "{}", answers[0]);
        assert_eq!(
            answers[0], answers[1],
            "{extra:?}: C (left) and rustshim (right)"
        );
        let [c, r] = ["c.img", "r.img"].map(|n| std::fs::read(files.path(n)).unwrap());
        assert!(c == r, "{extra:?}: the files differ afterwards");
    }
}

/// What a client sees of a file that cannot be opened for writing: `run` serves it.
fn read_only_view(run: impl Fn(&[String]) -> Run, file: &str) -> [String; 2] {
    let twin = Twin::new("file", &[file]);
    twin.both().map(|(label, server)| {
        let out = run(server);
        assert!(
            out.status.success(),
            "{label}: {}{}",
            out.stdout,
            out.stderr
        );
        out.stdout
    })
}

/// A user who may not write the file (nbdkit run as `nobody`, the file root's and 0644): both
/// serve it read-only, and a write fails with EPERM.
#[test]
fn a_file_the_user_may_not_write_is_served_read_only() {
    let files = Files::new("nobody", &[("disk.img", 1 << 20)]);
    let script = "h.connect_command(argv)\n\
                  print(h.is_read_only(), digest(h.pread(65536, 0)), attempt(h.pwrite, b'x', 0))";
    let [c, rust] = read_only_view(
        |server| {
            let mut argv: Vec<String> =
                vec!["nbdkit".into(), "-s".into(), "--exit-with-parent".into()];
            argv.extend(server.iter().cloned());
            run(command("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg("/usr/bin/python3")
                .arg("-c")
                .arg(format!(
                    "import nbd, hashlib\nargv = {argv:?}\nh = nbd.NBD()\n\
                     def digest(b): return hashlib.sha256(b).hexdigest()[:16]\n\
                     def attempt(f, *a):\n    try:\n        f(*a); return 'ok'\n    \
                     except nbd.Error as e: return e.errno\n{script}"
                ))
                .env("TMPDIR", "/tmp"))
        },
        &files.path("disk.img"),
    );
    assert!(c.starts_with("True "), "{c}");
    assert!(c.trim_end().ends_with(" EPERM"), "{c}");
    assert_eq!(c, rust, "C (left) and rustshim (right)");
}

/// A read-only file system (a read-only bind mount in a mount namespace of its own): both
/// serve the file read-only.
#[test]
fn a_file_on_a_read_only_file_system_is_served_read_only() {
    let files = Files::new("rofs", &[("disk.img", 1 << 20)]);
    let dir = files.dir.display().to_string();
    let [c, rust] = read_only_view(
        |server| {
            run(command("unshare")
                // (In $RUSTSHIM_ROOT's chroot, whose mounts are private already, `/` is no mount
                // point, so its propagation cannot be changed.)
                .args(["--mount", "--propagation", "unchanged", "/bin/sh", "-c"])
                .arg(format!(
                    "{{ mount --make-rprivate / 2>/dev/null || true; }} && \
                     mount --bind {dir} {dir} && mount -o remount,bind,ro {dir} && \
                     exec nbdinfo --json -- [ nbdkit --exit-with-parent \"$@\" ]"
                ))
                .arg("sh")
                .args(server))
        },
        &files.path("disk.img"),
    );
    assert!(c.contains("\"is_read_only\": true"), "{c}");
    assert_eq!(
        json_lines(&c),
        json_lines(&rust),
        "C (left) and rustshim (right)"
    );
}

/// nbdinfo's JSON without the lines naming the export.
fn json_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.contains("\"export-name\"") && !l.contains("\"uri\""))
        .collect()
}

/// `nbdinfo --list --json`: (name, size) of each export, sorted.
fn listed(server: &[String]) -> Vec<(String, u64)> {
    let out = nbdinfo_of(&["--list", "--json"], server).ok();
    let mut exports = Vec::new();
    let mut name = None;
    for line in out.stdout.lines() {
        let line = line.trim().trim_end_matches(',');
        if let Some(v) = line.strip_prefix("\"export-name\": ") {
            name = Some(v.trim_matches('"').to_string());
        }
        if let Some(v) = line.strip_prefix("\"export-size\": ") {
            exports.push((name.take().expect("a name first"), v.parse().unwrap()));
        }
    }
    exports.sort();
    exports
}

/// `dir=`: one export per regular file (links followed), none for a subdirectory; the data of
/// each; the default export and names with `/` refused.
#[test]
fn dir_serves_one_export_per_file() {
    let files = Files::new("dir", &[("a", 1 << 20), ("b", 3 * 4096 + 17)]);
    std::os::unix::fs::symlink("a", files.dir.join("link-to-a")).unwrap();
    std::fs::create_dir(files.dir.join("sub")).unwrap();
    let twin = Twin::new("file", &[format!("dir={}", files.dir.display())]);
    let [c, rust] = twin.both().map(|(_, s)| listed(s));
    assert_eq!(
        c,
        [
            ("a".to_string(), 1 << 20),
            ("b".to_string(), 3 * 4096 + 17),
            ("link-to-a".to_string(), 1 << 20)
        ]
    );
    assert_eq!(c, rust, "C (left) and rustshim (right)");
    let script = r#"
for name in ["b", "link-to-a", "", "sub", "../dir/a", "missing"]:
    h = nbd.NBD()
    h.set_export_name(name)
    try:
        h.connect_command(argv)
        print(name, h.get_size(), digest(h.pread(4096, 0)), h.is_read_only())
        h.shutdown()
    except nbd.Error as e:
        print(name, "refused")
"#;
    let [c, rust] = twin
        .both()
        .map(|(_, s)| stdio_client(s, script).ok().stdout);
    assert!(c.starts_with("b 12305 "), "{c}");
    assert!(c.contains("\n refused\n"), "the default export: {c}");
    assert_eq!(c, rust, "C (left) and rustshim (right)");
}

/// `nbdkit -U - SERVER --run CMD` in a shell that first opens descriptor 5 (`open`, e.g.
/// `5<>FILE`), which nbdkit inherits.
fn serve_with_fd5(server: &[String], open: &str, cmd: &str) -> Run {
    run(command("/bin/sh")
        .arg("-c")
        .arg(format!(
            "exec {open}; exec nbdkit -U - \"$@\" --run '{cmd}'"
        ))
        .arg("sh")
        .args(server))
}

/// `fd=` and `dirfd=` (nbdkit 1.34 on): the inherited descriptor served; a read-only one
/// read-only. nbdkit 1.32's C plugin has neither: the twin serves them there too.
#[test]
fn fd_and_dirfd_serve_inherited_descriptors() {
    let files = Files::new("fd", &[("disk.img", 1 << 20), ("other", 8192)]);
    let file = files.path("disk.img");
    let dir = files.dir.display().to_string();
    let info = "nbdinfo --json \"$uri\"";
    for (param, open, cmd) in [
        ("fd=5", format!("5<>{file}"), info.to_string()),
        ("fd=5", format!("5<{file}"), info.to_string()),
        (
            "dirfd=5",
            format!("5<{dir}"),
            "nbdinfo --list --json \"$uri\"".to_string(),
        ),
    ] {
        let twin = Twin::new("file", &[param]);
        let [c, rust] = twin.both().map(|(_, s)| serve_with_fd5(s, &open, &cmd));
        let rust = rust.ok().stdout;
        assert!(rust.contains("\"export-size\""), "{param} {open}: {rust}");
        if nbdkit_at_least(&[1, 34]) {
            let c = c.ok().stdout;
            assert_eq!(json_lines(&c), json_lines(&rust), "{param} {open}");
        } else {
            let c = c.failed();
            let key = param.split('=').next().unwrap();
            assert!(
                c.stderr.contains(&format!("unknown parameter '{key}'")),
                "{}",
                c.stderr
            );
        }
        if open.starts_with("5<>") {
            assert!(rust.contains("\"is_read_only\": false"), "{rust}");
        } else if param == "fd=5" {
            assert!(rust.contains("\"is_read_only\": true"), "{rust}");
        } else {
            assert!(
                rust.contains("\"other\"") && rust.contains("\"disk.img\""),
                "{rust}"
            );
        }
    }
}

/// `reduce-memory-pressure=true`, nbdkit 1.48's name for `cache=none`: the twin takes it on
/// every version, the C plugin from 1.48 on.
#[test]
fn reduce_memory_pressure_is_cache_none() {
    let files = Files::new("rmp", &[("disk.img", 1 << 20)]);
    let twin = Twin::new(
        "file",
        &[files.path("disk.img"), "reduce-memory-pressure=true".into()],
    );
    let [c, rust] = twin.both().map(|(_, s)| {
        serve_run(
            &[],
            s,
            "nbdsh -u \"$uri\" -c 'h.pwrite(b\"x\" * 65536, 0)' -c 'print(h.pread(3, 0))'",
        )
    });
    let rust = rust.ok().stdout;
    assert!(rust.contains("b'xxx'"), "{rust}");
    if nbdkit_at_least(&[1, 48]) {
        assert_eq!(c.ok().stdout, rust);
    } else {
        let c = c.failed();
        assert!(
            c.stderr
                .contains("unknown parameter 'reduce-memory-pressure'"),
            "{}",
            c.stderr
        );
    }
}

/// Parameters both refuse, for the same reason (the C plugin's words in the twin's message).
#[test]
fn both_refuse_the_same_bad_parameters() {
    let files = Files::new("bad", &[("disk.img", 4096)]);
    let file = files.path("disk.img");
    let dir = files.dir.display().to_string();
    let missing = files.path("missing");
    for (args, reason) in [
        (
            vec![missing.clone()],
            format!("{missing}: No such file or directory"),
        ),
        (
            vec![dir.clone()],
            format!("use dir= to serve files within {dir}"),
        ),
        (
            vec![format!("dir={file}")],
            format!("expecting a directory: {file}"),
        ),
        (
            vec![file.clone(), format!("dir={dir}")],
            if nbdkit_at_least(&[1, 34]) {
                "parameter can only appear once".into()
            } else {
                // The twin's words are 1.34's.
                "file= and dir= cannot be used at the same time".into()
            },
        ),
        (
            vec![file.clone(), "fadvise=sideways".into()],
            "unknown fadvise mode: sideways".into(),
        ),
        (
            vec![file.clone(), "cache=lots".into()],
            "unknown cache mode: lots".into(),
        ),
        (
            vec![file.clone(), "rdelay=1".into()],
            "add --filter=delay on the command line".into(),
        ),
        // (nbdkit 1.32: "… supply either [file=]<FILENAME> or dir=…".)
        (vec![], "[file=]<FILENAME>".into()),
    ] {
        let [c, rust] = both_refuse(&Twin::new("file", &args));
        assert!(c.contains(&reason), "C {args:?}: {c}");
        let reason = reason.replace(
            "file= and dir= cannot be used at the same time",
            "parameter can only appear once",
        );
        assert!(rust.contains(&reason), "rustshim {args:?}: {rust}");
    }
    for fd in ["fd=2", "dirfd=1"] {
        let [c, rust] = both_refuse(&Twin::new("file", &[fd]));
        let reason = "file descriptor must be > 2";
        assert!(rust.contains(reason), "{rust}");
        if nbdkit_at_least(&[1, 34]) {
            assert!(c.contains(reason), "{c}");
        } else {
            assert!(c.contains("unknown parameter"), "{c}");
        }
    }
}

/// A twin takes exactly its C plugin's keys, so a command line means the same with either:
/// `readonly=` (which the twin once took, and nbdkit's file plugin refuses on every version) is
/// refused by both, in the C plugin's words; read-only is nbdkit's `-r`.
#[test]
fn a_key_the_c_plugin_refuses_is_refused_by_the_twin_too() {
    let files = Files::new("readonly-key", &[("disk.img", 4096)]);
    let file = files.path("disk.img");
    for value in ["true", "false"] {
        let args = [file.clone(), format!("readonly={value}")];
        let [c, rust] = both_refuse(&Twin::new("file", &args));
        for (who, stderr) in [("C", &c), ("rustshim", &rust)] {
            assert!(
                stderr.contains("unknown parameter 'readonly'"),
                "{who} readonly={value}: {stderr}"
            );
        }
    }
}

/// `--dump-plugin`: the twin's lines about what it can do are the C plugin's (1.32's lacks
/// `file_extents`, which the twin has).
#[test]
fn dump_plugin_lines_are_the_c_plugins() {
    let twin = Twin::new("file", &[] as &[&str]);
    let [c, rust] = twin.both().map(|(_, s)| dump_plugin_lines(s));
    let ours: Vec<&String> = rust.iter().filter(|l| l.starts_with("file_")).collect();
    assert_eq!(ours.len(), 3, "{rust:?}");
    for line in ours {
        let expected = nbdkit_at_least(&[1, 34]) || line != "file_extents=yes";
        assert_eq!(c.contains(line), expected, "{line} in C's {c:?}");
    }
    assert!(rust
        .iter()
        .any(|l| l == "rustshim_plugin_magic_config_key=file"));
    assert!(c.iter().any(|l| l == "magic_config_key=file"));
}
