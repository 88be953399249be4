//! The command line, on every nbdkit: how the shim routes its arguments (`plugin=` or a bare
//! first argument, pairs before `plugin=` replayed after loading, bad keys and values refused
//! with one clear line, nbdkit exiting non-zero without a signal), what `--help` and
//! `--dump-plugin` say, and nbdkit's own options with the shim: `--run`, `--exit-with-parent`,
//! `-s`, filters before the plugin, and where the server has them (nbdkit ≥ 1.46) `@PATH`
//! argument files and `--name`. An older nbdkit refuses what it does not know, in one line.

use std::time::{Duration, Instant};

use rustshim_tests::*;

#[test]
fn plugin_given_twice() {
    let null = plugin("null");
    refused(
        &[
            format!("plugin={}", null.display()),
            format!("plugin={}", null.display()),
        ],
        &["plugin given twice"],
    );
    // A bare argument first, then plugin=.
    refused(
        &[
            null.display().to_string(),
            format!("plugin={}", null.display()),
        ],
        &["plugin given twice"],
    );
}

#[test]
fn no_plugin_at_all() {
    refused(&["size=1M"], &["no plugin given", "plugin=PATH"]);
}

#[test]
fn a_wrong_key_is_refused_by_the_plugin() {
    let null = plugin("null");
    refused(
        &[format!("plugin={}", null.display()), "colour=blue".into()],
        &["unknown parameter 'colour'"],
    );
}

#[test]
fn a_bad_value_is_refused_with_nbdkits_message() {
    let null = plugin("null");
    refused(
        &[format!("plugin={}", null.display()), "size=lots".into()],
        &["lots"],
    );
}

#[test]
fn non_utf8_values_are_refused() {
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"size=1\xffM");
    let out = run_nbdkit(
        shim_nbdkit()
            .arg(format!("plugin={}", plugin("null").display()))
            .arg(bad)
            .args(["--run", "true"]),
    )
    .failed();
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("parameter 'size'") && l.contains("not valid UTF-8")),
        "{}",
        out.stderr
    );
}

#[test]
fn keys_before_plugin_are_replayed_after_loading() {
    let null = plugin("null");
    let out = nbdinfo(
        &["--size"],
        &["size=2M".to_string(), format!("plugin={}", null.display())],
    )
    .ok();
    assert_eq!(out.stdout.trim(), (2 << 20).to_string());
}

#[test]
fn a_relative_plugin_path_is_made_absolute() {
    // From the target directory, a bare file name must not go through the linker's search path.
    let null = plugin("null");
    let out = run_nbdkit(
        shim_nbdkit()
            .args(["plugin=librustshim_null.so", "size=1M", "--dump-plugin"])
            .current_dir(null.parent().unwrap()),
    )
    .ok();
    assert!(
        out.stdout
            .contains(&format!("rustshim_plugin_path={}", null.display())),
        "{}",
        out.stdout
    );
}

#[test]
fn help_documents_the_shims_keys() {
    let out = nbdkit(&["--help"]).ok();
    assert!(out.stdout.contains("plugin=PATH"), "{}", out.stdout);
    assert!(out.stdout.contains("magic key"), "{}", out.stdout);
}

#[test]
fn dump_plugin_describes_the_inner_plugin() {
    let null = plugin("null");
    let out = nbdkit(&[format!("plugin={}", null.display()), "--dump-plugin".into()]).ok();
    let api_line = format!("rustshim_plugin_api_version={API_VERSION}");
    for line in [
        "name=rustshim",
        "rustshim_plugin_name=null",
        "rustshim_plugin_version=0.1.0",
        &api_line,
        "rustshim_plugin_magic_config_key=size",
        "rustshim_plugin_panic=unwind",
        "rustshim_has_pread=1",
        "rustshim_has_zero=1",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "missing {line}:\n{}",
            out.stdout
        );
    }
    assert!(
        !out.stdout.contains("rustshim_has_preconnect"),
        "only what the plugin implements"
    );
    assert!(
        out.stdout
            .contains(&format!("rustshim_server_version={}", nbdkit_version())),
        "{}",
        out.stdout
    );
}

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
    let argv = argv(
        &shim_nbdkit()
            .nbdkit_args(["-f", "--exit-with-parent", "-U"])
            .nbdkit_arg(&socket)
            .nbdkit_arg("-P")
            .nbdkit_arg(&pidfile)
            .args([test_plugin(), t.arg()]),
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
    let dir = temp_dir("filters");
    let log = dir.join("log");
    let out = run_nbdkit(
        shim_nbdkit()
            .nbdkit_args(["-U", "-", "--filter=cow", "--filter=log"])
            .args(memory("1M"))
            .arg(format!("logfile={}", log.display()))
            .arg("--run")
            .arg("nbdsh -u \"$uri\" -c 'h.pwrite(b\"y\" * 512, 0)' -c 'print(h.pread(512, 0) == b\"y\" * 512)'"),
    )
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
    let dir = temp_dir("at-path");
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
    let out = run_nbdkit(
        shim_nbdkit()
            .nbdkit_arg("--name=disk7")
            .args([test_plugin(), "fail=config_complete".into()])
            .args(["--run", "true"]),
    )
    .failed();
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
