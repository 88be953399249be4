//! A reload sees what the first load saw: a relative path among the parameters (`file=disk.img`)
//! is resolved, by `server::realpath` (nbdkit's `nbdkit_realpath`), against the directory
//! nbdkit was started in, also when nbdkit serves in the background and has changed to `/`
//! since (nbdkit does that when it forks, without `-f`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustshim_tests::*;

/// A directory with `disk.img` (4 KiB of pattern) and a copy of the `file` plugin to watch.
fn setup(tag: &str) -> (TempDir, PathBuf, Vec<u8>) {
    let dir = temp_dir(tag);
    let data = pattern(7, 4096);
    std::fs::write(dir.join("disk.img"), &data).unwrap();
    let watched = dir.join("plugin").join("librustshim_file.so");
    std::fs::create_dir(dir.join("plugin")).unwrap();
    install_build(&plugin("file"), &watched, Install::RenameOver);
    (dir, watched, data)
}

/// A background nbdkit (no `-f`): stopped with SIGTERM when dropped, whatever the test did.
struct Daemon {
    pidfile: PathBuf,
}

impl Daemon {
    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while nix::sys::signal::kill(pid, None).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Waits until `log` has a line with `needle`, and returns that line.
fn wait_for_line(log: &Path, needle: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needle:?} in nbdkit's log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// nbdkit in the background (as an admin runs it: no `-f`, so it forks and changes to `/`),
/// started in the directory of `disk.img` with `file=disk.img` and `reload=watch`; its stderr
/// (`-v --log=stderr`) goes to a file. A new build of the plugin then lands: the reload is done,
/// not refused with `realpath: disk.img: No such file or directory`, and a client reads the
/// file through the new generation.
#[test]
fn a_background_nbdkit_reloads_with_a_relative_path() {
    let (dir, watched, data) = setup("reload-paths-bg");
    let socket = dir.join("nbd.sock");
    let pidfile = dir.join("nbdkit.pid");
    let log = dir.join("nbdkit.log");
    std::fs::create_dir(dir.join("tmp")).unwrap();
    let started = run_nbdkit(
        shim_nbdkit()
            // nbdkit's stdout and stderr (kept by the forked server) into the log.
            .prefix([
                "/bin/sh".to_string(),
                "-c".into(),
                format!("exec \"$@\" >{} 2>&1", py(&log)),
                "sh".into(),
            ])
            .current_dir(dir.path())
            .env("TMPDIR", dir.join("tmp"))
            // -v: a forked nbdkit keeps its stderr only when verbose.
            .nbdkit_args(["-v", "--log=stderr", "-U"])
            .nbdkit_arg(&socket)
            .nbdkit_arg("-P")
            .nbdkit_arg(&pidfile)
            .args([
                format!("plugin={}", watched.display()),
                "file=disk.img".into(),
                "reload=watch".into(),
            ]),
    );
    let daemon = Daemon { pidfile };
    started.ok();
    let deadline = Instant::now() + TIMEOUT;
    while daemon.pid().is_none() {
        assert!(Instant::now() < deadline, "no pidfile");
        std::thread::sleep(Duration::from_millis(20));
    }
    let uri = format!("nbd+unix:///?socket={}", socket.display());
    let copy = |name: &str| {
        let out = dir.join(name);
        run(command("nbdcopy").arg(&uri).arg(&out)).ok();
        std::fs::read(out).unwrap()
    };
    assert!(copy("first.img") == data, "generation 1 serves disk.img");

    install_build(
        &rebuilt(&plugin("file"), &dir, "bg"),
        &watched,
        Install::RenameOver,
    );
    let line = wait_for_line(&log, "rustshim: reload");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        line.contains("generation 2 from") && !text.contains("refused"),
        "{text}"
    );
    assert!(copy("second.img") == data, "generation 2 serves disk.img");
    drop(daemon);
}

/// The same in the foreground (`-f`, no change of directory): the path is resolved the same
/// way, not twice against the start directory.
#[test]
fn a_foreground_nbdkit_reloads_with_a_relative_path() {
    let (dir, watched, data) = setup("reload-paths-fg");
    let server = shim_nbdkit()
        .current_dir(dir.path())
        .args([
            format!("plugin={}", watched.display()),
            "file=disk.img".into(),
            "reload=watch".into(),
        ])
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(server.read(0, 4096).unwrap() == data);
    install_build(
        &rebuilt(&plugin("file"), &dir, "fg"),
        &watched,
        Install::RenameOver,
    );
    let line = server.wait_for_log("rustshim: reload", 1).unwrap();
    assert!(line.contains("generation 2 from"), "{}", server.log());
    assert!(server.read(0, 4096).unwrap() == data);
}
