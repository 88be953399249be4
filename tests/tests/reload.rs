//! Hot reload (`reload=watch`): a new build of the plugin file serves new connections while open
//! connections keep the build that opened them, a broken build is refused while the good one
//! keeps serving, and no request fails meanwhile.

use std::path::PathBuf;
use std::sync::OnceLock;

use rustshim_tests::fixtures::{build_plugin, build_plugins, ApiCopy, MINIMAL_PLUGIN};
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
        let so = build_plugins("reload", &ApiCopy { version: "1.0.0", edits: &[] }, &named, &[]);
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
    server: BackgroundNbdkit,
}

impl Watched {
    fn start() -> Watched {
        Watched::start_with(&[])
    }

    /// Like `start`, with extra nbdkit options (e.g. `-v` to see the shim's debug lines).
    fn start_with(nbdkit_options: &[&str]) -> Watched {
        let dir = TempDir::new("reload");
        install_build(
            &builds().v1,
            &dir.join("libwatched.so"),
            Install::RenameOver,
        );
        let server = BackgroundNbdkit::start(
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
            .python("h = nbd.NBD()\nh.connect_unix(SOCKET)\nprint(h.pread(1, 0).hex())")
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
    let script = format!(
        r#"
import threading, shutil
h1 = nbd.NBD()
h1.connect_unix(SOCKET)
assert h1.pread(4, 0) == b'\x11' * 4
reads, bad, stop = [0], [], [False]
def loop():
    while not stop[0]:
        try:
            if h1.pread(65536, 0) != b'\x11' * 65536:
                bad.append('wrong data')
            reads[0] += 1
        except Exception as e:
            bad.append(str(e))
t = threading.Thread(target=loop)
t.start()
while reads[0] < 50:
    time.sleep(0.001)
shutil.copy({v2:?}, {tmp:?})
os.rename({tmp:?}, {plugin:?})
while 'generation 2 from' not in open({log:?}).read():
    time.sleep(0.01)
h2 = nbd.NBD()
h2.connect_unix(SOCKET)
assert h2.pread(4, 0) == b'\x22' * 4, h2.pread(4, 0)
assert h1.pread(4, 0) == b'\x11' * 4
after = reads[0]
while reads[0] < after + 50:
    time.sleep(0.001)
stop[0] = True
t.join()
print(reads[0], len(bad), bad[:3])
"#,
        v2 = builds().v2.display().to_string(),
        tmp = w.dir.join("incoming.tmp").display().to_string(),
        plugin = w.plugin_path().display().to_string(),
        log = w.server.log.display().to_string(),
    );
    let out = w.server.python(&script).ok();
    let fields: Vec<&str> = out.stdout.split_whitespace().collect();
    assert!(fields[0].parse::<u32>().unwrap() >= 100, "{}", out.stdout);
    assert_eq!(
        fields[1], "0",
        "failed reads during the reload: {}",
        out.stdout
    );
    let line = w.server.wait_for_log("generation 2 from", 1);
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
shutil.copy({v2:?}, {plugin:?})
while 'generation 2 from' not in open({log:?}).read():
    time.sleep(0.01)
print(open({trace:?}).read().count('cleanup'))
h1.shutdown()
"#,
        v2 = builds().v2.display().to_string(),
        plugin = w.plugin_path().display().to_string(),
        log = w.server.log.display().to_string(),
        trace = w.dir.join("trace").display().to_string(),
    );
    // While the v1 connection is open, v1 is not cleaned up.
    let out = w.server.python(&script).ok();
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
    let mut w = Watched::start();
    install_build(&builds().v2, &w.plugin_path(), Install::RenameOver);
    w.server.wait_for_log("generation 2 from", 1);
    assert_eq!(w.new_connection_reads(), "22");

    let dir = TempDir::new("broken");
    let text = dir.join("text.so");
    std::fs::write(&text, "not a plugin\n").unwrap();
    let truncated = dir.join("truncated.so");
    std::fs::write(&truncated, &std::fs::read(&builds().v1).unwrap()[..200_000]).unwrap();
    let other_major = build_plugin(
        "api_v2",
        &ApiCopy {
            version: "2.0.0",
            edits: &[],
        },
        MINIMAL_PLUGIN,
        &[],
    );

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
        let line = w.server.wait_for_log(reason, 1);
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
        .wait_for_log("changed on disk but not in content: no reload", 1);
    // ...so the real change that follows is generation 2, straight from v1 to v2.
    install_build(&builds().v2, &w.plugin_path(), Install::RenameOver);
    let line = w.server.wait_for_log("serves new connections", 1);
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
    let dir = TempDir::new("handover");
    let watched = dir.join("libmemory.so");
    install_build(&plugin("memory"), &watched, Install::RenameOver);
    let server = BackgroundNbdkit::start(
        &[],
        &[
            format!("plugin={}", watched.display()),
            "reload=watch".into(),
            "size=64M".into(),
        ],
    );
    let v2 = rebuilt(&plugin("memory"), &dir, "v2");
    let v3 = rebuilt(&plugin("memory"), &dir, "v3");
    let script = format!(
        r#"
import shutil
def wait_for(text):
    while text not in open({log:?}).read():
        time.sleep(0.01)
data = os.urandom(1 << 20)
h1 = nbd.NBD()
h1.connect_unix(SOCKET)
h1.pwrite(data, 4 << 20)
shutil.copy({v2:?}, {plugin:?} + '.tmp'); os.rename({plugin:?} + '.tmp', {plugin:?})
wait_for('generation 2 from')
h2 = nbd.NBD()
h2.connect_unix(SOCKET)
assert h2.pread(1 << 20, 4 << 20) == data, 'data written before the reload is kept'
# The old connection still writes to the same disk the new build serves.
h1.pwrite(b'old' * 1000, 0)
assert h2.pread(3000, 0) == b'old' * 1000, 'a write on the old build is seen by the new one'
h2.pwrite(b'new' * 1000, 8192)
assert h1.pread(3000, 8192) == b'new' * 1000, 'and the other way round'
h1.shutdown()
shutil.copy({v3:?}, {plugin:?} + '.tmp'); os.rename({plugin:?} + '.tmp', {plugin:?})
wait_for('generation 3 from')
h3 = nbd.NBD()
h3.connect_unix(SOCKET)
assert h3.pread(1 << 20, 4 << 20) == data and h3.pread(3000, 0) == b'old' * 1000
print('ok')
"#,
        log = server.log.display().to_string(),
        v2 = v2.display().to_string(),
        v3 = v3.display().to_string(),
        plugin = watched.display().to_string(),
    );
    assert_eq!(server.python(&script).ok().stdout.trim(), "ok");
    let line = server.wait_for_log("generation 3 from", 1);
    assert!(
        line.contains("took over state 'rustshim-memory-disk'"),
        "{line}"
    );
}

#[test]
fn a_plugin_that_does_not_opt_in_starts_fresh() {
    let w = Watched::start();
    install_build(&builds().v2, &w.plugin_path(), Install::RenameOver);
    let line = w.server.wait_for_log("generation 2 from", 1);
    assert!(line.contains("starts with fresh state"), "{line}");
}
