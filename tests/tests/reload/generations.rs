//! Hot reload (`reload=watch`): a new build of the plugin file serves new connections while open
//! connections keep the build that opened them, a broken build is refused while the good one
//! keeps serving, and no request fails meanwhile.

use std::path::PathBuf;
use std::sync::OnceLock;

use rustshim_tests::fixtures::{build_plugins, other_major_plugin, ApiCopy};
use rustshim_tests::*;

/// A plugin whose data is one repeated byte, so a client sees which build serves it, and which
/// notes `open`, `close`, `cleanup` and `unload` in a trace file.
const RELOADABLE: &str = r#"
use rustshim_plugin_api::prelude::*;
use std::io::Write;

const BYTE: u8 = @BYTE@;

#[derive(Default)]
struct Reloadable {
    trace: Option<std::path::PathBuf>,
}

impl Reloadable {
    fn note(&self, what: &str) {
        if let Some(path) = &self.trace {
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
            writeln!(f, "v{BYTE:#04x} {what}").unwrap();
        }
    }
}

#[plugin]
impl Plugin for Reloadable {
    type Handle = ();
    const NAME: &'static str = "reloadable";
    const VERSION: Option<&'static str> = Some("@VERSION@");

    fn load(&mut self) {
        @LOAD@
    }

    fn config(&mut self, key: &str, value: &str) -> Result<()> {
        @CONFIG@
        match key {
            "trace" => self.trace = Some(value.into()),
            _ => return Err(Error::invalid(format!("unknown parameter '{key}'"))),
        }
        Ok(())
    }

    fn open(&self, _readonly: bool) -> Result<()> {
        self.note("open");
        Ok(())
    }

    fn close(&self, _handle: ()) {
        self.note("close");
    }

    fn get_size(&self, _: &()) -> Result<u64> {
        Ok(1 << 20)
    }

    fn pread(&self, _: &(), buf: &mut [u8], _offset: u64, _flags: Flags) -> Result<()> {
        buf.fill(BYTE);
        Ok(())
    }

    @EXTRA@

    fn cleanup(&mut self) {
        self.note("cleanup");
    }

    fn unload(&mut self) {
        self.note("unload");
    }
}

export_plugin!(Reloadable);
"#;

fn variant(byte: u8, version: &str, load: &str, config: &str, extra: &str) -> String {
    RELOADABLE
        .replace("@BYTE@", &format!("{byte:#04x}"))
        .replace("@VERSION@", version)
        .replace("@LOAD@", load)
        .replace("@CONFIG@", config)
        .replace("@EXTRA@", extra)
}

/// The builds used here: v1 and v2 (good), and broken v3s.
struct Builds {
    v1: PathBuf,
    v2: PathBuf,
    v3_config_fails: PathBuf,
    v3_load_panics: PathBuf,
    v3_stricter_threads: PathBuf,
}

fn builds() -> &'static Builds {
    static BUILDS: OnceLock<Builds> = OnceLock::new();
    BUILDS.get_or_init(|| {
        let sources = [
            ("reload_v1", variant(0x11, "1", "", "", "")),
            ("reload_v2", variant(0x22, "2", "", "", "")),
            (
                "reload_v3_config_fails",
                variant(0x33, "3", "", r#"if key == "trace" { return Err(Error::invalid("v3 refuses trace=")); }"#, ""),
            ),
            ("reload_v3_load_panics", variant(0x33, "3", r#"panic!("v3 panics in load");"#, "", "")),
            (
                "reload_v3_stricter_threads",
                variant(
                    0x33,
                    "3",
                    "",
                    "",
                    "fn thread_model(&self) -> Result<ThreadModel> { Ok(ThreadModel::SerializeConnections) }",
                ),
            ),
        ];
        let named: Vec<(&str, &str)> = sources.iter().map(|(n, s)| (*n, s.as_str())).collect();
        let so = build_plugins("reload", &ApiCopy { version: API_VERSION, edits: &[] }, &named, &[]);
        Builds {
            v1: so[0].clone(),
            v2: so[1].clone(),
            v3_config_fails: so[2].clone(),
            v3_load_panics: so[3].clone(),
            v3_stricter_threads: so[4].clone(),
        }
    })
}

/// A plugin path the test owns, with v1 at it, served with reload=watch and a trace file.
struct Watched {
    dir: TempDir,
    server: Server,
}

impl Watched {
    fn start() -> Watched {
        Watched::start_with(&[])
    }

    /// Like `start`, with extra nbdkit options (e.g. `-v` to see the shim's debug lines).
    fn start_with(nbdkit_options: &[&str]) -> Watched {
        let dir = temp_dir("reload");
        install_build(
            &builds().v1,
            &dir.join("libwatched.so"),
            Install::RenameOver,
        );
        let server = serve(
            nbdkit_options,
            &[
                format!("plugin={}", dir.join("libwatched.so").display()),
                "reload=watch".into(),
                format!("trace={}", dir.join("trace").display()),
            ],
        );
        Watched { dir, server }
    }

    fn plugin_path(&self) -> PathBuf {
        self.dir.join("libwatched.so")
    }

    fn trace(&self) -> String {
        std::fs::read_to_string(self.dir.join("trace")).unwrap_or_default()
    }

    /// Reads one byte of the export on a new connection.
    fn new_connection_reads(&self) -> String {
        self.server
            .client("h.connect_unix(SOCKET)\nprint(h.pread(1, 0).hex())")
            .ok()
            .stdout
            .trim()
            .to_string()
    }
}

#[test]
fn open_connections_keep_their_build_while_new_ones_get_the_new_build() {
    let w = Watched::start();
    // One connection reads in a loop on its own thread while the file is replaced; after the
    // reload line it must still see v1, a new connection must see v2, and no read may fail.
    let out = python_script(
        "reload_keeps_open_connections.py",
        &[
            w.server.socket(),
            &builds().v2,
            &w.dir.join("incoming.tmp"),
            &w.plugin_path(),
            w.server.log_path(),
        ],
    )
    .ok();
    let fields: Vec<&str> = out.stdout.split_whitespace().collect();
    assert!(fields[0].parse::<u32>().unwrap() >= 100, "{}", out.stdout);
    assert_eq!(
        fields[1], "0",
        "failed reads during the reload: {}",
        out.stdout
    );
    let line = w.server.wait_for_log("generation 2 from", 1).unwrap();
    assert!(
        line.contains("version 1 -> 2"),
        "the reload line says what changed: {line}"
    );
}

#[test]
fn a_replaced_generation_is_cleaned_up_and_unloaded_once_after_its_last_connection() {
    let w = Watched::start();
    let script = format!(
        r#"
import shutil
h1 = nbd.NBD()
h1.connect_unix(SOCKET)
shutil.copy({v2}, {plugin})
while 'generation 2 from' not in open({log}).read():
    time.sleep(0.01)
print(open({trace}).read().count('cleanup'))
h1.shutdown()
"#,
        v2 = py(&builds().v2),
        plugin = py(&w.plugin_path()),
        log = py(w.server.log_path()),
        trace = py(&w.dir.join("trace")),
    );
    // While the v1 connection is open, v1 is not cleaned up.
    let out = w.server.client(&script).ok();
    assert_eq!(
        out.stdout.trim(),
        "0",
        "v1 was cleaned up while a connection used it"
    );
    // Once it closed: cleanup then unload, each exactly once, and after the close.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !w.trace().contains("v0x11 unload") {
        assert!(
            std::time::Instant::now() < deadline,
            "v1 never unloaded:\n{}",
            w.trace()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let v1: Vec<String> = w
        .trace()
        .lines()
        .filter(|l| l.starts_with("v0x11"))
        .map(String::from)
        .collect();
    assert_eq!(
        v1,
        ["v0x11 open", "v0x11 close", "v0x11 cleanup", "v0x11 unload"]
    );
    assert!(
        !w.trace().contains("v0x22 cleanup"),
        "the new generation keeps serving"
    );
    assert_eq!(w.new_connection_reads(), "22");
}

#[test]
fn broken_builds_are_refused_and_the_good_one_keeps_serving() {
    let w = Watched::start();
    install_build(&builds().v2, &w.plugin_path(), Install::RenameOver);
    w.server.wait_for_log("generation 2 from", 1).unwrap();
    assert_eq!(w.new_connection_reads(), "22");

    let dir = temp_dir("broken");
    let text = dir.join("text.so");
    std::fs::write(&text, "not a plugin\n").unwrap();
    let truncated = dir.join("truncated.so");
    std::fs::write(&truncated, &std::fs::read(&builds().v1).unwrap()[..200_000]).unwrap();
    let other_major = other_major_plugin();

    let cases: [(&PathBuf, Install, &str); 6] = [
        (
            &builds().v3_config_fails,
            Install::RenameOver,
            "v3 refuses trace=",
        ),
        (
            &builds().v3_load_panics,
            Install::DeleteCreate,
            "panic in load: v3 panics in load",
        ),
        (
            &builds().v3_stricter_threads,
            Install::CopyInPlace,
            "stricter than the parallel",
        ),
        (
            &other_major,
            Install::RenameOver,
            "rustshim-plugin-api 2.0.0",
        ),
        (&text, Install::RenameOver, "not a shared object"),
        (&truncated, Install::CopyInPlace, "truncated"),
    ];
    for (n, (build, how, reason)) in cases.iter().enumerate() {
        install_build(build, &w.plugin_path(), *how);
        let line = w.server.wait_for_log(reason, 1).unwrap();
        assert!(
            line.contains("refused, generation 2 keeps serving"),
            "case {n}: {line}"
        );
        assert_eq!(
            w.new_connection_reads(),
            "22",
            "case {n}: the good build still serves"
        );
    }
    assert!(w.server.is_running());
    // Each refused build was unloaded again, the good one never.
    assert!(!w.trace().contains("v0x22 unload"), "{}", w.trace());
}

#[test]
fn a_touched_but_unchanged_file_is_not_reloaded() {
    let w = Watched::start_with(&["-v"]);
    install_build(&builds().v1, &w.plugin_path(), Install::CopyInPlace);
    // The rewrite of the same bytes is seen, and not made a generation of its own...
    w.server
        .wait_for_log("changed on disk but not in content: no reload", 1)
        .unwrap();
    // ...so the real change that follows is generation 2, straight from v1 to v2.
    install_build(&builds().v2, &w.plugin_path(), Install::RenameOver);
    let line = w.server.wait_for_log("serves new connections", 1).unwrap();
    assert!(
        line.contains("generation 2 from") && line.contains("version 1 -> 2"),
        "{line}"
    );
    assert!(
        line.ends_with("generation 1 retires now"),
        "no connection was open: {line}"
    );
    assert_eq!(w.new_connection_reads(), "22");
}

#[test]
fn the_memory_disk_keeps_its_data_across_reloads() {
    let dir = temp_dir("handover");
    let watched = dir.join("libmemory.so");
    install_build(&plugin("memory"), &watched, Install::RenameOver);
    let server = serve(
        &[],
        &[
            format!("plugin={}", watched.display()),
            "reload=watch".into(),
            "size=64M".into(),
        ],
    );
    let v2 = rebuilt(&plugin("memory"), &dir, "v2");
    let v3 = rebuilt(&plugin("memory"), &dir, "v3");
    let out = python_script(
        "reload_memory_handover.py",
        &[server.socket(), server.log_path(), &v2, &v3, &watched],
    )
    .ok();
    assert_eq!(out.stdout.trim(), "ok");
    let line = server.wait_for_log("generation 3 from", 1).unwrap();
    assert!(
        line.contains("took over state 'rustshim-memory-disk'"),
        "{line}"
    );
}

#[test]
fn a_plugin_that_does_not_opt_in_starts_fresh() {
    let w = Watched::start();
    install_build(&builds().v2, &w.plugin_path(), Install::RenameOver);
    let line = w.server.wait_for_log("generation 2 from", 1).unwrap();
    assert!(line.contains("starts with fresh state"), "{line}");
}

/// Writes `bytes` to `to` as a writer that is slow to finish: part of them, a pause with the file
/// open, the rest, then the close. `fresh`: into a new file (the old one deleted first, as
/// editors and `install` do), else in place (truncated and rewritten, as `cp` does). Returns
/// when the file was closed.
fn write_with_a_pause(
    to: &std::path::Path,
    bytes: &[u8],
    fresh: bool,
    pause: std::time::Duration,
) -> std::time::Instant {
    use std::io::Write;
    if fresh {
        std::fs::remove_file(to).unwrap();
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(fresh)
        .truncate(true)
        .open(to)
        .unwrap();
    let half = bytes.len() / 2;
    f.write_all(&bytes[..half]).unwrap();
    std::thread::sleep(pause);
    f.write_all(&bytes[half..]).unwrap();
    drop(f);
    std::time::Instant::now()
}

#[test]
fn a_half_written_build_is_never_loaded_and_the_finished_one_at_once() {
    for fresh in [false, true] {
        let w = Watched::start();
        let v2 = std::fs::read(&builds().v2).unwrap();
        let closed = write_with_a_pause(
            &w.plugin_path(),
            &v2,
            fresh,
            std::time::Duration::from_millis(500),
        );
        let line = w.server.wait_for_log("generation 2 from", 1).unwrap();
        let seen = closed.elapsed();
        // Anything more the writer's events would start has happened by now.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let log = w.server.log();
        let reload_lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("rustshim: reload"))
            .collect();
        assert_eq!(
            reload_lines,
            [line.as_str()],
            "fresh file: {fresh}: one reload, of the finished build:\n{log}"
        );
        assert!(!log.contains("refused"), "fresh file: {fresh}:\n{log}");
        assert!(line.contains("version 1 -> 2"), "{line}");
        // It was read at the close, not after waiting for quiet (the fallback waits 1 s): from
        // the close to the line is the load ("ready in N ms") and little else.
        let ready_ms: u128 = line
            .split("ready in ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no load time in: {line}"));
        assert!(
            seen.as_millis() < ready_ms + 500,
            "fresh file: {fresh}: the line came {} ms after the close, the load took {ready_ms} ms",
            seen.as_millis()
        );
        assert_eq!(w.new_connection_reads(), "22", "fresh file: {fresh}");
    }
}
