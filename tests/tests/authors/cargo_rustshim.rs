//! `cargo rustshim`, as a plugin author runs it from a crate outside this workspace: `new`
//! writes a crate that takes the rustshim crates from crates.io by version; `run` serves it,
//! prints the URI and reloads each good build; `test` runs the crate's tests against each
//! nbdkit and fails when they do; `doctor` names each problem with the command that fixes it.
//! (`package` is tried in tests/tests/authors/package.rs, where the fresh Debian roots are; the whole
//! way from `cargo install` in an empty directory is `cargo xtask try-author`.)
//!
//! The crates that build are made with `cargo xtask new-plugin`, which points them at this
//! checkout (the crates are not on crates.io yet), in one shared target directory.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use rustshim_tests::*;

/// A fresh crate `name` made with `cargo xtask new-plugin` in the authors' directory.
fn fresh_crate(name: &str, extra: &[&str]) -> PathBuf {
    let dir = authors_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    xtask_new_plugin(name, &dir, extra).ok();
    dir
}

#[test]
fn new_writes_a_crate_that_takes_the_rustshim_crates_by_version() {
    let temp = temp_dir("cargo-rustshim-new");
    let out = run(&mut cargo_rustshim(temp.path(), &["new", "demo"])).ok();
    assert!(
        out.stdout.contains("created the plugin crate demo"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("cargo rustshim test"), "{}", out.stdout);
    let manifest = std::fs::read_to_string(temp.join("demo/Cargo.toml")).unwrap();
    let api = API_VERSION.rsplit_once('.').unwrap().0;
    for line in [
        format!("rustshim-plugin-api = \"{api}\""),
        "rustshim-harness = \"0.1\"".to_string(),
        "kind = \"plugin\"".to_string(),
        "crate-type = [\"cdylib\"]".to_string(),
    ] {
        assert!(manifest.contains(&line), "no {line} in:\n{manifest}");
    }
    assert!(
        !manifest.contains("patch") && !manifest.contains("path ="),
        "{manifest}"
    );
    for file in ["src/lib.rs", "tests/serve.rs", "README.md", ".gitignore"] {
        assert!(temp.join("demo").join(file).is_file(), "{file}");
    }
    let readme = std::fs::read_to_string(temp.join("demo/README.md")).unwrap();
    assert!(readme.contains("cargo rustshim run size=1G"), "{readme}");

    let out = run(&mut cargo_rustshim(
        temp.path(),
        &["new", "inverter", "--filter"],
    ))
    .ok();
    assert!(out.stdout.contains("created the filter crate inverter"));
    let manifest = std::fs::read_to_string(temp.join("inverter/Cargo.toml")).unwrap();
    assert!(manifest.contains("kind = \"filter\""), "{manifest}");

    // A bad name and a used directory: one line each, nothing written.
    let out = run(&mut cargo_rustshim(temp.path(), &["new", "Bad_Name"])).failed();
    assert_eq!(
        out.stderr.trim(),
        "cargo rustshim: error: 'Bad_Name' is not a valid plugin name: use lowercase letters, \
         digits and '-', starting with a letter (e.g. my-disk)"
    );
    assert!(!temp.join("Bad_Name").exists());
    let out = run(&mut cargo_rustshim(temp.path(), &["new", "demo"])).failed();
    assert!(
        out.stderr.contains("demo exists and is not empty"),
        "{}",
        out.stderr
    );

    // --api-path: a [patch.crates-io] to a local copy, by relative path.
    let out = run(&mut cargo_rustshim(
        temp.path(),
        &["new", "local", "--api-path", workspace().to_str().unwrap()],
    ))
    .ok();
    assert!(out.stdout.contains("created the plugin crate local"));
    let manifest = std::fs::read_to_string(temp.join("local/Cargo.toml")).unwrap();
    assert!(manifest.contains("[patch.crates-io]"), "{manifest}");
    assert!(
        manifest.contains("rustshim-plugin-api = { path = \"../"),
        "{manifest}"
    );
    let out = run(&mut cargo_rustshim(
        temp.path(),
        &["new", "nowhere", "--api-path", "/"],
    ))
    .failed();
    assert!(
        out.stderr
            .contains("--api-path /: no rustshim-plugin-api there"),
        "{}",
        out.stderr
    );
}

/// What a background `cargo rustshim run` printed so far.
struct Background {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    _files: TempDir,
}

impl Background {
    fn start(dir: &Path, args: &[&str]) -> Background {
        Background::start_env(dir, args, &[])
    }

    fn start_env(dir: &Path, args: &[&str], envs: &[(&str, &Path)]) -> Background {
        let files = temp_dir("cargo-rustshim-run");
        let (stdout, stderr) = (files.join("stdout"), files.join("stderr"));
        let child = cargo_rustshim(dir, args)
            .envs(envs.iter().copied())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Background {
            child,
            stdout,
            stderr,
            _files: files,
        }
    }

    fn said(&self) -> (String, String) {
        let read = |path: &Path| {
            let mut text = String::new();
            let _ = std::fs::File::open(path).map(|mut f| f.read_to_string(&mut text));
            text
        };
        (read(&self.stdout), read(&self.stderr))
    }

    /// Waits until stdout or stderr has a line containing `needle` after the first `skip`
    /// such lines; returns that line.
    fn wait_for(&mut self, needle: &str, skip: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (out, err) = self.said();
            let found = out
                .lines()
                .chain(err.lines())
                .filter(|line| line.contains(needle))
                .nth(skip);
            if let Some(line) = found {
                return line.to_string();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("cargo rustshim run exited ({status}) before '{needle}':\n{out}\n{err}");
            }
            assert!(
                Instant::now() < deadline,
                "no '{needle}' after 300 s:\n{out}\n{err}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nbdinfo --size URI`, as a user would, with the suite's client.
fn size_at(uri: &str) -> String {
    run(rustshim_harness::command("nbdinfo").args(["--size", uri]))
        .ok()
        .stdout
        .trim()
        .to_string()
}

#[test]
fn run_serves_prints_the_uri_and_reloads_each_good_build() {
    let dir = fresh_crate("run-demo", &[]);
    let mut served = Background::start(&dir, &["run", "size=1M"]);
    let uri_line = served.wait_for("nbd+unix://", 0);
    let uri = uri_line.trim().to_string();
    assert_eq!(size_at(&uri), "1048576");
    let socket_dir = PathBuf::from(uri.split("socket=").nth(1).unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    run(rustshim_harness::command("nbdsh").args([
        "-u",
        &uri,
        "-c",
        "h.pwrite(b'kept' * 1024, 8192)",
    ]))
    .ok();

    // A new version of the crate: rebuilt, loaded for new connections, the disk kept.
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replacen("version = \"0.1.0\"", "version = \"0.2.0\"", 1),
    )
    .unwrap();
    let reload = served.wait_for("serves new connections", 0);
    assert!(
        reload.contains("generation 2") && reload.contains("version 0.1.0 -> 0.2.0"),
        "{reload}"
    );
    let read = run(rustshim_harness::command("nbdsh").args([
        "-u",
        &uri,
        "-c",
        "print(h.pread(4096, 8192) == b'kept' * 1024)",
    ]))
    .ok();
    assert_eq!(read.stdout.trim(), "True");

    // A build that does not compile: said, and the last good one keeps serving.
    let lib = dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, format!("{source}\nfn broken( {{\n")).unwrap();
    served.wait_for(
        "the build failed (above); the last good build keeps serving",
        0,
    );
    assert_eq!(size_at(&uri), "1048576");

    // Ctrl-C: nbdkit stops, its socket directory goes, and so do we, successfully.
    nix_kill(served.child.id(), "INT");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "cargo rustshim run did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = served.said();
    assert!(status.success(), "{status}\n{out}\n{err}");
    assert!(out.contains("Stopping."), "{out}");
    assert!(!socket_dir.exists(), "{} was left", socket_dir.display());
}

/// A client holding one connection open: it connects to `uri`, writes, says so (a file), and
/// when told (another file) tries a read and prints `open` or `closed`.
struct HeldClient {
    child: Child,
    go: PathBuf,
    _files: TempDir,
}

impl HeldClient {
    fn connect(uri: &str) -> HeldClient {
        let files = temp_dir("cargo-rustshim-held");
        let (ready, go) = (files.join("ready"), files.join("go"));
        let script = format!(
            "import nbd, os, time\nh = nbd.NBD()\nh.connect_uri({uri:?})\nh.pwrite(b'held' * 1024, 0)\nopen({ready:?}, 'w').close()\nwhile not os.path.exists({go:?}):\n    time.sleep(0.05)\ntry:\n    h.pread(4096, 0)\n    print('open')\nexcept nbd.Error:\n    print('closed')\n",
            ready = ready.display().to_string(),
            go = go.display().to_string(),
        );
        let child = rustshim_harness::command("/usr/bin/python3")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.exists() {
            assert!(Instant::now() < deadline, "the client did not connect");
            std::thread::sleep(Duration::from_millis(50));
        }
        HeldClient {
            child,
            go,
            _files: files,
        }
    }

    /// Lets it read once more; what it printed (`open` or `closed`).
    fn finish(self) -> String {
        std::fs::write(&self.go, b"").unwrap();
        let out = self.child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// `run --restart`: a good build stops nbdkit and starts it again on the same URI, serving the
/// new build (here a disk half the size) with a fresh disk; the connection open before is
/// closed.
#[test]
fn run_restart_serves_the_new_build_on_the_same_uri_and_closes_old_connections() {
    let dir = fresh_crate("run-restart", &[]);
    let mut served = Background::start(&dir, &["run", "--restart", "size=1M"]);
    let serving = served.wait_for("Serving ", 0);
    assert!(
        serving.contains("restarted at each good build"),
        "{serving}"
    );
    let uri = served.wait_for("nbd+unix://", 0).trim().to_string();
    assert_eq!(size_at(&uri), "1048576");
    let held = HeldClient::connect(&uri);

    let lib = dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let halved = source.replacen("Ok(self.disk().size())", "Ok(self.disk().size() / 2)", 1);
    assert_ne!(source, halved, "the template's get_size changed");
    std::fs::write(&lib, halved).unwrap();
    let restarted = served.wait_for("run: nbdkit serves the new build at", 0);
    assert!(restarted.ends_with(&uri), "{restarted} is not {uri}");
    assert_eq!(size_at(&uri), "524288");
    // A fresh disk: what the held client wrote is gone with the old nbdkit.
    let read = run(rustshim_harness::command("nbdsh").args([
        "-u",
        &uri,
        "-c",
        "print(h.pread(4096, 0) == bytes(4096))",
    ]))
    .ok();
    assert_eq!(read.stdout.trim(), "True");
    assert_eq!(held.finish(), "closed");
    let (out, _) = served.said();
    assert!(!out.contains("reload=watch"), "{out}");
}

/// `run --retire-limit 1`: a plugin that hands over at retirement, a client holding a
/// connection: the reload of the next build is refused after 1 s (not the default 30), in the
/// shim's line naming the limit, and the last good build keeps serving.
#[test]
fn run_retire_limit_makes_a_held_reload_refused_after_that_many_seconds() {
    let dir = fresh_crate("run-retire", &[]);
    let lib = dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let anchor = "    const MAGIC_CONFIG_KEY: Option<&'static str> = Some(\"size\");\n";
    assert!(source.contains(anchor), "the template changed");
    std::fs::write(
        &lib,
        source.replacen(
            anchor,
            &format!("{anchor}    const HAND_OVER_AT_RETIRE: bool = true;\n"),
            1,
        ),
    )
    .unwrap();
    let mut served = Background::start(&dir, &["run", "--retire-limit", "1", "size=1M"]);
    let uri = served.wait_for("nbd+unix://", 0).trim().to_string();
    let held = HeldClient::connect(&uri);

    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replacen("version = \"0.1.0\"", "version = \"0.2.0\"", 1),
    )
    .unwrap();
    served.wait_for("run: build done", 0);
    let built = Instant::now();
    let refused = served.wait_for("refused", 0);
    let waited = built.elapsed();
    assert!(
        refused.contains("generation 1 keeps serving")
            && refused.contains("still has 1 open connection(s) after 1 s")
            && refused.contains("RUSTSHIM_RETIRE_LIMIT"),
        "{refused}"
    );
    assert!(waited < Duration::from_secs(15), "refused after {waited:?}");
    // The old build still serves, the held connection included.
    assert_eq!(size_at(&uri), "1048576");
    assert_eq!(held.finish(), "open");
}

/// A filter crate: `run` serves it in front of the Rust memory plugin with `size=1G`, which an
/// argument of the filter's own (`invert=false`) does not replace and `size=` does; the first
/// line names the plugin below, its arguments, and `--plugin` to choose another.
#[test]
fn run_keeps_a_filters_defaults_and_names_the_plugin_below() {
    let dir = fresh_crate("run-filter", &["--filter"]);
    for (args, size) in [
        (vec!["run", "invert=false"], "1073741824"),
        (vec!["run", "invert=false", "size=1M"], "1048576"),
    ] {
        // The workspace's memory plugin, where an installed shim finds its own.
        let plugins = plugin("memory").parent().unwrap().to_path_buf();
        let mut served =
            Background::start_env(&dir, &args, &[("RUSTSHIM_PLUGIN_PATH", plugins.as_path())]);
        let serving = served.wait_for("Serving ", 0);
        let expected = if size == "1048576" {
            "in front of the Rust plugin 'memory' (invert=false size=1M; --plugin NAME|PATH chooses another)"
        } else {
            "in front of the Rust plugin 'memory' (size=1G invert=false; --plugin NAME|PATH chooses another)"
        };
        assert!(serving.contains(expected), "{args:?}: {serving}");
        let uri = served.wait_for("nbd+unix://", 0).trim().to_string();
        assert_eq!(size_at(&uri), size, "{args:?}");
    }
}

/// `new --filter` says where the filter file is, as a filter's.
#[test]
fn new_filter_names_the_filter_file() {
    let temp = temp_dir("cargo-rustshim-new-filter");
    let out = run(&mut cargo_rustshim(
        temp.path(),
        &["new", "inverter", "--filter"],
    ))
    .ok();
    assert!(
        out.stdout
            .contains("(the filter file: target/debug/libinverter.so after cargo build)"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("plugin file"), "{}", out.stdout);
}

/// `kill -SIGNAL PID`.
fn nix_kill(pid: u32, signal: &str) {
    run(std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string()))
    .ok();
}

#[test]
fn test_runs_the_crates_tests_on_every_nbdkit_and_fails_when_they_fail() {
    let dir = fresh_crate("test-demo", &[]);
    let out = run_cargo(&mut cargo_rustshim(&dir, &["test", "--nbdkit", "all"])).ok();
    for key in ["system", "1.42", "1.48"] {
        assert!(
            out.stdout.contains(&format!(
                "test: nbdkit {key}: the tests of test-demo passed"
            )),
            "{}",
            out.stdout
        );
    }
    assert!(
        out.stdout
            .contains("test the_disk_has_the_size_given ... ok"),
        "{}",
        out.stdout
    );

    std::fs::write(
        dir.join("tests/broken.rs"),
        "#[test]\nfn a_test_that_fails() {\n    assert_eq!(1 + 1, 3);\n}\n",
    )
    .unwrap();
    let out = run_cargo(&mut cargo_rustshim(&dir, &["test", "--nbdkit", "1.42"])).failed();
    assert!(
        out.stdout.contains("test a_test_that_fails ... FAILED"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("cargo rustshim: error: the tests on nbdkit 1.42 failed"),
        "{}",
        out.stderr
    );
    let out = run(&mut cargo_rustshim(&dir, &["test", "--nbdkit", "1.40"])).failed();
    assert!(
        out.stderr
            .contains("--nbdkit 1.40: not one of system, 1.42, 1.48 or all"),
        "{}",
        out.stderr
    );
}

#[test]
fn doctor_names_each_problem_with_the_command_that_fixes_it() {
    let dir = fresh_crate("doctor-demo", &[]);
    run_cargo(
        cargo_in(&dir)
            .args(["build", "--quiet"])
            .env("CARGO_TARGET_DIR", authors_target()),
    )
    .ok();

    let out = run_cargo(&mut cargo_rustshim(&dir, &["doctor"])).ok();
    let said = &out.stdout;
    assert!(
        said.contains(&format!("ok       nbdkit: {} (", nbdkit_version())),
        "{said}"
    );
    assert!(
        said.contains(&format!("ABI (rustshim-plugin-api) {API_VERSION}")),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "ok       ABI: the crate uses rustshim-plugin-api {API_VERSION}; the shim speaks {API_VERSION}"
        )),
        "{said}"
    );
    assert!(said.contains("ok       build: the shim loads"), "{said}");
    assert!(said.ends_with("doctor: no problems found\n"), "{said}");

    // No shim where RUSTSHIM_SHIM says.
    let out =
        run_cargo(cargo_rustshim(&dir, &["doctor"]).env("RUSTSHIM_SHIM", "/nonexistent/shim.so"))
            .failed();
    assert!(
        out.stdout
            .contains("PROBLEM  shim: RUSTSHIM_SHIM=/nonexistent/shim.so is not a file"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("         fix: unset RUSTSHIM_SHIM (to use the installed shim)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("problem(s) found (each with its fix above)"),
        "{}",
        out.stderr
    );

    // A build in a directory others may write: the shim's refusal, and the chmod that fixes it.
    let temp = temp_dir("doctor-permissions");
    let target = temp.join("target");
    std::fs::create_dir_all(target.join("debug")).unwrap();
    std::fs::copy(
        authors_target().join("debug/libdoctor_demo.so"),
        target.join("debug/libdoctor_demo.so"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o777)).unwrap();
    let doctor = || {
        let mut cmd = cargo_rustshim(&dir, &["doctor"]);
        cmd.env("CARGO_TARGET_DIR", &target);
        cmd
    };
    let out = run_cargo(&mut doctor()).failed();
    let problem = out
        .stdout
        .lines()
        .find(|line| line.starts_with("PROBLEM  build:"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        problem.contains("is writable by group or others"),
        "{problem}"
    );
    let fix = format!("chmod go-w '{}'", target.display());
    assert!(
        out.stdout.contains(&format!("         fix: {fix}\n")),
        "{}",
        out.stdout
    );
    run(std::process::Command::new("sh").args(["-c", &fix])).ok();
    let out = run_cargo(&mut doctor()).ok();
    assert!(
        out.stdout.contains("doctor: no problems found"),
        "{}",
        out.stdout
    );

    // A crate that takes the crates from crates.io, where they are not yet: how to stand in.
    run(&mut cargo_rustshim(temp.path(), &["new", "unpublished"])).ok();
    let out = run_cargo(&mut cargo_rustshim(&temp.join("unpublished"), &["doctor"])).failed();
    assert!(
        out.stderr.contains("rustshim-plugin-api"),
        "cargo's own words: {}",
        out.stderr
    );
    let problem = out
        .stdout
        .lines()
        .skip_while(|line| !line.starts_with("PROBLEM  crate:"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        problem.contains("fix: if cargo cannot find rustshim-plugin-api on crates.io")
            && problem.contains("`cargo xtask crates`"),
        "{}",
        out.stdout
    );
}
