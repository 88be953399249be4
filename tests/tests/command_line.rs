//! nbdkit's own command line with the shim, on every nbdkit: `--run`, `--exit-with-parent`,
//! `-s`, filters before the plugin, and where the server has them (nbdkit ≥ 1.46) `@PATH`
//! argument files and `--name`. An older nbdkit refuses what it does not know, in one line.

#[path = "../fixtures/support.rs"]
mod support;

use std::time::{Duration, Instant};

use rustshim_tests::*;
use support::*;

/// `@PATH` argument files and `--name` came in nbdkit 1.46 (nbdkit-release-notes-1.46(1)).
const AT_PATH_AND_NAME_SINCE: [u32; 2] = [1, 46];

fn memory(size: &str) -> Vec<String> {
    vec![
        format!("plugin={}", plugin("memory").display()),
        format!("size={size}"),
    ]
}

#[test]
fn run_serves_the_command_and_exits_with_its_status() {
    let out = nbdkit_run(&memory("1M"), "nbdinfo --size \"$uri\"").ok();
    assert_eq!(out.stdout.trim(), "1048576");
    // nbdkit's exit status is the command's.
    let out = nbdkit_run(&memory("1M"), "exit 3");
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr);
}

#[test]
fn single_connection_on_stdin_and_stdout() {
    let out = python(&format!(
        "h = nbd.NBD()\n\
         h.connect_command({argv:?})\n\
         h.pwrite(b'x' * 512, 4096)\n\
         print(h.get_size(), h.pread(512, 4096) == b'x' * 512)\n\
         h.shutdown()",
        argv = stdio_argv(&[], &memory("2M"))
    ))
    .ok();
    assert_eq!(out.stdout.trim(), "2097152 True");
}

/// nbdkit started with `--exit-with-parent` by a shell goes when the shell does, and still shuts
/// the plugin down cleanly (close, cleanup, unload).
#[test]
fn exit_with_parent_stops_nbdkit_cleanly_when_the_parent_goes() {
    let t = Trace::new("exit-with-parent");
    let socket = t.file("sock");
    let pidfile = t.file("pid");
    let mut argv = nbdkit_argv(&[test_plugin(), t.arg()]);
    argv.splice(
        1..1,
        [
            "-f".to_string(),
            "--exit-with-parent".into(),
            "-U".into(),
            socket.display().to_string(),
            "-P".into(),
            pidfile.display().to_string(),
        ],
    );
    // The shell starts nbdkit, waits until it serves, then exits.
    let script = format!(
        "{} & for i in $(seq 200); do [ -s {pid} ] && exit 0; sleep 0.05; done; exit 1",
        argv.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" "),
        pid = pidfile.display()
    );
    run(command("/bin/sh").arg("-c").arg(script)).ok();
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok() {
        assert!(
            Instant::now() < deadline,
            "nbdkit {pid} outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let names = t.names();
    assert_eq!(
        names.last().map(String::as_str),
        Some("unload"),
        "{names:?}"
    );
    assert!(names.contains(&"cleanup".to_string()), "{names:?}");
}

/// C filters before the shim see the Rust plugin as any other plugin: the log filter logs the
/// client's requests, the cow filter keeps the writes from reaching it.
#[test]
fn filters_before_the_plugin() {
    let dir = TempDir::new("filters");
    let log = dir.join("log");
    let mut argv = nbdkit_argv(&memory("1M"));
    argv.insert(1, "--filter=log".into());
    argv.insert(1, "--filter=cow".into());
    argv.push(format!("logfile={}", log.display()));
    let out = run(command(&argv[0])
        .arg("-U")
        .arg("-")
        .args(&argv[1..])
        .arg("--run")
        .arg("nbdsh -u \"$uri\" -c 'h.pwrite(b\"y\" * 512, 0)' -c 'print(h.pread(512, 0) == b\"y\" * 512)'"))
    .ok();
    assert_eq!(out.stdout.trim(), "True");
    let log = std::fs::read_to_string(&log).unwrap();
    // cow sits above log, so the plugin (and the log) never see a write, only the reads cow
    // makes to fill its overlay.
    assert!(log.contains("Connect"), "{log}");
    assert!(log.contains("Read "), "{log}");
    assert!(!log.contains("Write "), "{log}");
}

/// `@PATH`: nbdkit reads the shim's keys from a file, the plugin included (`plugin=` is a key
/// of the shim). Before nbdkit 1.46 `@PATH` reaches the shim as an ordinary bare argument, and
/// the shim says in one line that this nbdkit does not read argument files.
#[test]
fn at_path_argument_files() {
    let dir = TempDir::new("at-path");
    let file = dir.join("args.txt");
    std::fs::write(
        &file,
        format!("# the plugin and its size\n{}\n", memory("3M").join("\n")),
    )
    .unwrap();
    let args = [format!("@{}", file.display())];
    if nbdkit_at_least(&AT_PATH_AND_NAME_SINCE) {
        let out = nbdkit_run(&args, "nbdinfo --size \"$uri\"").ok();
        assert_eq!(out.stdout.trim(), "3145728");
    } else {
        let out = nbdkit_run(&args, "nbdinfo --size \"$uri\"").failed();
        assert_eq!(
            out.stderr.trim(),
            format!(
                "nbdkit: error: rustshim: '@{}': this nbdkit ({}) does not read @PATH argument \
                 files (nbdkit 1.46 and later do): give the keys on the command line",
                file.display(),
                nbdkit_version()
            )
        );
    }
}

/// `--name`: nbdkit names itself in its messages, the shim's and the plugin's included. Before
/// nbdkit 1.46 the option is refused.
#[test]
fn name_appears_in_the_messages() {
    let mut argv = nbdkit_argv(&[test_plugin(), "fail=config_complete".into()]);
    argv.insert(1, "--name=disk7".into());
    let out = run(command(&argv[0]).args(&argv[1..]).arg("--run").arg("true")).failed();
    if nbdkit_at_least(&AT_PATH_AND_NAME_SINCE) {
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains("config_complete"))
            .unwrap_or_else(|| panic!("{}", out.stderr));
        assert!(line.contains("disk7"), "{line}");
    } else {
        assert!(
            out.stderr.contains("unrecognized option") && out.stderr.contains("name"),
            "{}",
            out.stderr
        );
    }
}
