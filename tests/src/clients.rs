//! Python clients with libnbd: the prelude every script starts with, clients that start nbdkit
//! themselves over stdio (`connect_command`), clients of a [`Server`], and small helpers for
//! what the clients print.

use std::ffi::OsStr;
use std::path::Path;

use rustshim_harness::Server;

use crate::files::temp_dir;
use crate::nbdkit::{command, run, stdio_argv, Check, Run};

/// Definitions every Python client starts with (`tests/scripts/prelude.py`).
const PRELUDE: &str = include_str!("../scripts/prelude.py");

/// Runs a Python program with libnbd after [`PRELUDE`].
#[track_caller]
pub fn python(program: &str) -> Run {
    let program = format!("{PRELUDE}\n{program}\n");
    run(command("/usr/bin/python3").arg("-c").arg(program))
}

/// Runs a script of `tests/scripts/` (see [`script`](crate::script)) with these arguments.
#[track_caller]
pub fn python_script<S: AsRef<OsStr>>(name: &str, args: &[S]) -> Run {
    run(command("/usr/bin/python3")
        .arg(crate::artifacts::script(name))
        .args(args))
}

/// A Python client of `nbdkit -s OPTS SHIM ARGS`, with the handle `h` and the list `argv`
/// defined and not yet connected: `script` does everything.
#[track_caller]
pub fn raw_client<S: AsRef<OsStr>>(opts: &[&str], args: &[S], script: &str) -> Run {
    let argv = stdio_argv(opts, args);
    python(&format!("argv = {argv:?}\nh = nbd.NBD()\n{script}"))
}

/// A Python client session: `setup` (before connecting), connect, `body`, then a clean
/// disconnect; when this returns nbdkit has exited, so `close`, `cleanup` and `unload` are
/// traced.
#[track_caller]
pub fn session<S: AsRef<OsStr>>(opts: &[&str], args: &[S], setup: &str, body: &str) -> Run {
    raw_client(
        opts,
        args,
        &format!("{setup}\nh.connect_command(argv)\n{body}\nh.shutdown()\ndel h\n"),
    )
}

/// [`session`] without options or setup, which must succeed; returns its output.
#[track_caller]
pub fn client<S: AsRef<OsStr>>(args: &[S], body: &str) -> String {
    session(&[], args, "", body).ok().stdout
}

/// Python clients of a [`Server`] the harness started.
pub trait ServerClients {
    /// Runs a Python program after [`PRELUDE`] with `URI` and `SOCKET` (the server's) defined
    /// and `h` a handle not yet connected; returns what it printed, however it ended.
    fn client(&self, script: &str) -> Run;
}

impl ServerClients for Server {
    #[track_caller]
    fn client(&self, script: &str) -> Run {
        python(&format!(
            "URI = {:?}\nSOCKET = {}\nh = nbd.NBD()\n{script}",
            self.uri(),
            py(self.socket())
        ))
    }
}

/// A path as a Python string literal.
pub fn py(path: &Path) -> String {
    format!("{:?}", path.to_str().expect("a UTF-8 path"))
}

/// Parses JSON with Python and prints `expr` (a Python expression over `j`) as JSON.
#[track_caller]
pub fn json_query(json_text: &str, expr: &str) -> String {
    let dir = temp_dir("json");
    let file = dir.join("in.json");
    std::fs::write(&file, json_text).expect("write json");
    let out = python(&format!(
        "j = json.load(open({}))\nprint(json.dumps({expr}, sort_keys=True))",
        py(&file)
    ))
    .ok();
    out.stdout.trim().to_owned()
}

/// The `Connect …` line of a `--filter=log` log file, from `export=` on.
#[track_caller]
pub fn connect_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).expect("log file written");
    let line = text
        .lines()
        .find(|l| l.contains(" Connect "))
        .unwrap_or_else(|| panic!("no Connect line in:\n{text}"));
    line[line.find("export=").expect("export= in Connect line")..].to_owned()
}
