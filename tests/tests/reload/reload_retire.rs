//! Hand-over at retirement (`HAND_OVER_AT_RETIRE = true`), as an author sees it:
//!
//! * the new generation's `take_over` runs at one point, the documented one, after
//!   `config_complete` and before `get_ready` (and so before `after_fork`), whether the swap
//!   happened at once (no connection open on the old generation) or waited for the old
//!   generation's connections to close;
//! * how long the swap waits is `$RUSTSHIM_RETIRE_LIMIT` seconds (default 30): a connection
//!   that closes within it is waited for and its write handed over; one that stays open past it
//!   gets the reload refused in one line naming the limit, and the old generation keeps serving
//!   (its data included) until a later build lands.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustshim_tests::fixtures::{build_plugins, SAME_API};
use rustshim_tests::*;

/// A 4 KiB disk whose state can only be copied, handed over at retirement; each lifecycle
/// step and `take_over` print a line, so the order can be read in nbdkit's log.
const ORDER: &str = r#"
use rustshim_plugin_api::prelude::*;
use std::sync::Mutex;

struct Order {
    data: Mutex<Vec<u8>>,
}

impl Default for Order {
    fn default() -> Self {
        Order { data: Mutex::new(vec![0; 4096]) }
    }
}

#[plugin]
impl Plugin for Order {
    type Handle = ();
    const NAME: &'static str = "order";
    const VERSION: Option<&'static str> = Some("@VERSION@");
    const HAND_OVER_AT_RETIRE: bool = true;

    fn config_complete(&mut self) -> Result<()> {
        eprintln!("order-step v@VERSION@ config_complete");
        Ok(())
    }

    fn get_ready(&mut self) -> Result<()> {
        eprintln!("order-step v@VERSION@ get_ready");
        Ok(())
    }

    fn after_fork(&mut self) -> Result<()> {
        eprintln!("order-step v@VERSION@ after_fork");
        Ok(())
    }

    fn open(&self, _readonly: bool) -> Result<()> {
        Ok(())
    }

    fn get_size(&self, _: &()) -> Result<u64> {
        Ok(4096)
    }

    fn pread(&self, _: &(), buf: &mut [u8], offset: u64, _flags: Flags) -> Result<()> {
        let data = self.data.lock().unwrap_or_else(|p| p.into_inner());
        buf.copy_from_slice(&data[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }

    fn pwrite(&self, _: &(), buf: &[u8], offset: u64, _flags: Flags) -> Result<()> {
        let mut data = self.data.lock().unwrap_or_else(|p| p.into_inner());
        data[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn hand_over(&self) -> Option<Handover> {
        let data = self.data.lock().unwrap_or_else(|p| p.into_inner());
        Some(Handover::bytes("order", data.clone()))
    }

    fn take_over(&mut self, state: Handover) -> Result<bool> {
        eprintln!("order-step v@VERSION@ take_over");
        let Some(bytes) = state.into_bytes() else {
            return Ok(false);
        };
        *self.data.get_mut().unwrap() = bytes;
        Ok(true)
    }
}

export_plugin!(Order);
"#;

/// Builds v1, v2 and v3 of the plugin.
fn builds() -> &'static [PathBuf] {
    static BUILDS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    BUILDS.get_or_init(|| {
        let sources: Vec<(String, String)> = ["1", "2", "3"]
            .iter()
            .map(|v| (format!("order_v{v}"), ORDER.replace("@VERSION@", v)))
            .collect();
        let named: Vec<(&str, &str)> = sources
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_str()))
            .collect();
        build_plugins("retire-order", &SAME_API, &named, &[])
    })
}

/// Serves v1 from a watched path with reload=watch and `$RUSTSHIM_RETIRE_LIMIT` = `limit`.
fn serve_v1(tag: &str, limit: &str) -> (TempDir, PathBuf, Server) {
    let dir = temp_dir(tag);
    let watched = dir.join("liborder.so");
    install_build(&builds()[0], &watched, Install::RenameOver);
    let server = shim_nbdkit()
        .args([
            format!("plugin={}", watched.display()),
            "reload=watch".into(),
        ])
        .env("RUSTSHIM_RETIRE_LIMIT", limit)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    (dir, watched, server)
}

/// The steps generation `version` printed, in order.
fn steps(log: &str, version: &str) -> Vec<String> {
    let prefix = format!("order-step v{version} ");
    log.lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

/// A client that connects, writes `data` at 0, puts `build` over `watched` (as cargo lands a
/// build), keeps its connection open for `hold` seconds, closes it, then waits for the shim's
/// line about the reload and, on a new connection, prints what it reads at 0.
fn write_reload_and_hold(
    server: &Server,
    watched: &Path,
    build: &Path,
    data: &str,
    hold: f64,
) -> String {
    let script = format!(
        r#"
import shutil
h.connect_unix(SOCKET)
h.pwrite({data:?}.encode(), 0)
shutil.copy({build:?}, {watched:?} + '.tmp'); os.rename({watched:?} + '.tmp', {watched:?})
time.sleep({hold})
h.shutdown()
while 'generation 2 from' not in open({log:?}).read() and 'refused' not in open({log:?}).read():
    time.sleep(0.01)
h2 = nbd.NBD()
h2.connect_unix(SOCKET)
print(bytes(h2.pread({n}, 0)).decode())
"#,
        build = build.display().to_string(),
        watched = watched.display().to_string(),
        log = server.log_path().display().to_string(),
        n = data.len(),
    );
    server.client(&script).ok().stdout.trim().to_string()
}

/// No connection open at the reload: the swap is at once, and `take_over` comes after
/// `config_complete` and before `get_ready` and `after_fork`.
#[test]
fn take_over_runs_before_get_ready_when_the_swap_is_at_once() {
    let (_dir, watched, server) = serve_v1("retire-order-now", "30");
    server.write(0, b"kept").unwrap();
    install_build(&builds()[1], &watched, Install::RenameOver);
    let line = server.wait_for_log("generation 2 from", 1).unwrap();
    assert!(line.contains("took over state 'order'"), "{line}");
    assert_eq!(
        steps(&server.log(), "2"),
        ["config_complete", "take_over", "get_ready", "after_fork"],
        "{}",
        server.log()
    );
    assert_eq!(server.read(0, 4).unwrap(), b"kept");
}

/// A connection open at the reload, closed after a second and a half: the swap waits for it,
/// and `take_over` still comes after `config_complete` and before `get_ready` and
/// `after_fork`; the write made on it before it closed is in the new generation.
#[test]
fn take_over_runs_before_get_ready_when_the_swap_waits_for_the_old_connections() {
    let (_dir, watched, server) = serve_v1("retire-order-wait", "30");
    let read = write_reload_and_hold(&server, &watched, &builds()[1], "waited", 1.5);
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("generation 2 from"))
        .unwrap_or_else(|| panic!("no reload line:\n{log}"));
    assert!(
        line.contains("took over state 'order' when generation 1 retired"),
        "{line}"
    );
    assert_eq!(
        steps(&log, "2"),
        ["config_complete", "take_over", "get_ready", "after_fork"],
        "{log}"
    );
    assert_eq!(read, "waited", "{log}");
}

/// `RUSTSHIM_RETIRE_LIMIT=2`: a connection closed after 1 s is waited for (the reload goes
/// through, its write handed over); one held open for 4 s gets the reload refused after 2 s, in
/// one line naming the limit and the variable, the old generation keeps serving its data, and
/// the next build loads.
#[test]
fn the_retire_limit_is_settable_and_both_outcomes_hold() {
    // Within the limit.
    let (_dir, watched, server) = serve_v1("retire-limit-within", "2");
    let read = write_reload_and_hold(&server, &watched, &builds()[1], "within", 1.0);
    assert_eq!(read, "within", "{}", server.log());
    assert!(
        server
            .log()
            .contains("took over state 'order' when generation 1 retired"),
        "{}",
        server.log()
    );

    // Past the limit.
    let (_dir, watched, server) = serve_v1("retire-limit-past", "2");
    let started = std::time::Instant::now();
    let read = write_reload_and_hold(&server, &watched, &builds()[1], "past", 4.0);
    let log = server.log();
    let refusal: Vec<&str> = log.lines().filter(|l| l.contains("refused")).collect();
    assert_eq!(refusal.len(), 1, "{log}");
    assert!(
        refusal[0].contains("generation 1 keeps serving")
            && refusal[0].contains("still has 1 open connection(s) after 2 s")
            && refusal[0].contains("RUSTSHIM_RETIRE_LIMIT"),
        "{}",
        refusal[0]
    );
    assert!(!log.contains("generation 2 from"), "{log}");
    assert!(started.elapsed().as_secs_f64() >= 4.0);
    // The old generation served the new connection, with the write of the old one.
    assert_eq!(read, "past", "{log}");
    assert_eq!(steps(&log, "2"), ["config_complete"], "{log}");
    // Nothing is stuck: with no connection open, the next build loads at once.
    install_build(&builds()[2], &watched, Install::RenameOver);
    let line = server.wait_for_log("generation 2 from", 1).unwrap();
    assert!(line.contains("took over state 'order'"), "{line}");
    assert_eq!(server.read(0, 4).unwrap(), b"past");
}

/// A value that is not a number of seconds is refused at start, in one line naming it.
#[test]
fn a_bad_retire_limit_is_one_line_at_start() {
    let dir = temp_dir("retire-limit-bad");
    let watched = dir.join("liborder.so");
    install_build(&builds()[0], &watched, Install::RenameOver);
    let out = run_nbdkit(
        shim_nbdkit()
            .nbdkit_args(["-U", "-"])
            .args([
                format!("plugin={}", watched.display()),
                "reload=watch".into(),
                "--run".into(),
                "true".into(),
            ])
            .env("RUSTSHIM_RETIRE_LIMIT", "soon"),
    )
    .failed();
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.starts_with("order-step"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(
        lines[0].contains("RUSTSHIM_RETIRE_LIMIT=soon: expected a number of seconds"),
        "{}",
        lines[0]
    );
}
