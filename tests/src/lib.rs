//! Helpers for the integration tests: find (and if needed build) the shim and the plugins, and
//! drive the real nbdkit with real NBD clients.
//!
//! Every helper runs its program under `timeout`, so a hang fails the test instead of the suite.
//! Clients come from Debian: `nbdsh`/python3-libnbd needs `/usr/bin/python3`, so `/usr/bin` is
//! put first on `PATH` for every child.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// Seconds any one child process may run.
pub const TIMEOUT_SECS: u32 = 120;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// Where cargo puts debug builds.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("debug")
}

/// Builds the shim and every plugin (the workspace's default members) once per test binary,
/// so `cargo test` alone works; a no-op when they are up to date.
fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet"])
            .current_dir(workspace())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the shim and plugins failed");
    });
}

/// The shim, `libnbdkit_rustshim_plugin.so`.
pub fn shim() -> PathBuf {
    ensure_built();
    target_dir().join("libnbdkit_rustshim_plugin.so")
}

/// A plugin of this workspace by its crate suffix: `plugin("memory")` is
/// `librustshim_memory.so`.
pub fn plugin(name: &str) -> PathBuf {
    ensure_built();
    let path = target_dir().join(format!("librustshim_{name}.so"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A variant plugin built as an example of the test plugin crate: `example_plugin("minimal")`.
pub fn example_plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "rustshim-test", "--examples"])
            .current_dir(workspace())
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "building the test plugin's examples failed"
        );
    });
    target_dir().join("examples").join(format!("lib{name}.so"))
}

/// `PATH` with `/usr/bin` first (Debian's python3 has the `nbd` module).
pub fn path_env() -> String {
    format!(
        "/usr/bin:/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A command under `timeout`, with the test `PATH`, made by the harness: inside the Debian root
/// of `$RUSTSHIM_ROOT` when that is set (`cargo xtask test --nbdkit 1.48`).
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = rustshim_harness::command("timeout");
    cmd.arg("--kill-after=5")
        .arg(TIMEOUT_SECS.to_string())
        .arg(program);
    cmd
}

/// The nbdkit command line for the shim with these arguments (to be run by a client).
pub fn nbdkit_argv<S: AsRef<str>>(args: &[S]) -> Vec<String> {
    let mut argv = vec!["nbdkit".to_string(), shim().display().to_string()];
    argv.extend(args.iter().map(|a| a.as_ref().to_string()));
    argv
}

/// The version of the nbdkit the suite runs against (`1.32.5`), from `nbdkit --version`, asked
/// once per test binary.
pub fn nbdkit_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let out = run(command("nbdkit").arg("--version")).ok();
        out.stdout
            .split_whitespace()
            .nth(1)
            .expect("nbdkit --version prints `nbdkit VERSION`")
            .to_owned()
    })
}

/// Whether that nbdkit is at least `min` (`[1, 42]`, `[1, 42, 6]`).
pub fn nbdkit_at_least(min: &[u32]) -> bool {
    let version: Vec<u32> = nbdkit_version()
        .split('.')
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    version[..min.len().min(version.len())] >= *min
}

/// Output of a finished process, as text.
pub struct Run {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics with the output unless the process succeeded.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert!(
            self.status.success(),
            "failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless the process failed with a plain non-zero exit (no signal, no timeout).
    #[track_caller]
    pub fn failed(self) -> Run {
        use std::os::unix::process::ExitStatusExt;
        let code = self.status.code();
        assert!(
            code.is_some()
                && code != Some(0)
                && code != Some(124)
                && code != Some(137)
                && self.status.signal().is_none(),
            "expected a clean failure, got {:?}:\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs a command to completion.
pub fn run(cmd: &mut Command) -> Run {
    Run::from(cmd.output().expect("the command starts"))
}

/// Runs `nbdkit SHIM args...` itself (for `--dump-plugin`, `--help`, error cases, `--run`).
pub fn nbdkit<S: AsRef<str>>(args: &[S]) -> Run {
    let argv = nbdkit_argv(args);
    run(command(&argv[0]).args(&argv[1..]))
}

/// Runs a Python script with libnbd's `nbd` module, the connected handle in `h`: nbdkit with
/// the shim and `args` is started by libnbd (`-s --exit-with-parent`), no socket involved.
/// What the script prints is returned.
pub fn nbdsh<S: AsRef<str>>(args: &[S], script: &str) -> Run {
    let mut argv = vec![
        "nbdkit".to_string(),
        "-s".into(),
        "--exit-with-parent".into(),
        shim().display().to_string(),
    ];
    argv.extend(args.iter().map(|a| a.as_ref().to_string()));
    let program = format!(
        "import nbd, os, sys\nh = nbd.NBD()\nh.connect_command({argv:?})\n{script}\n",
        argv = argv
    );
    run(command("/usr/bin/python3").arg("-c").arg(program))
}

/// `nbdinfo OPTIONS -- [ nbdkit --exit-with-parent SHIM args... ]` (nbdinfo starts nbdkit by
/// socket activation). `--exit-with-parent` because libnbd ≥ 1.16 leaves the server running when
/// it gives up on it (a refused export, say), and that nbdkit would hold our stderr pipe open.
pub fn nbdinfo<S: AsRef<str>>(options: &[&str], args: &[S]) -> Run {
    let argv = nbdkit_argv(args);
    run(command("nbdinfo")
        .args(options)
        .arg("--")
        .arg("[")
        .arg(&argv[0])
        .arg("--exit-with-parent")
        .args(&argv[1..])
        .arg("]"))
}

/// `nbdkit -U - SHIM args... --run CMD`: CMD sees `$uri`, `$unixsocket` and friends.
pub fn nbdkit_run<S: AsRef<str>>(args: &[S], cmd: &str) -> Run {
    let argv = nbdkit_argv(args);
    run(command(&argv[0])
        .arg("-U")
        .arg("-")
        .args(&argv[1..])
        .arg("--run")
        .arg(cmd))
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("rustshim-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic pseudo-random bytes (xorshift), so data tests need no extra crate.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Plugins built in a workspace of their own, against a copy of `plugin-api` that may differ
/// from the shim's (another version, a changed ABI): what a third party shipping a binary does.
pub mod fixtures {
    use super::*;

    /// How the fixture's copy of `plugin-api` differs from the shim's.
    pub struct ApiCopy<'a> {
        /// The version written into the copy's Cargo.toml.
        pub version: &'a str,
        /// Edits to the copy: (file relative to `plugin-api/`, text to find, replacement).
        pub edits: &'a [(&'a str, &'a str, &'a str)],
    }

    /// A plugin crate's `src/lib.rs`: the smallest useful plugin, named `fixture`.
    pub const MINIMAL_PLUGIN: &str = r#"
use rustshim_plugin_api::prelude::*;
#[derive(Default)]
struct Fixture;
#[plugin]
impl Plugin for Fixture {
    type Handle = ();
    const NAME: &'static str = "fixture";
    fn open(&self, _readonly: bool) -> Result<()> { Ok(()) }
    fn get_size(&self, _: &()) -> Result<u64> { Ok(1 << 20) }
    fn pread(&self, _: &(), buf: &mut [u8], _offset: u64, _flags: Flags) -> Result<()> {
        buf.fill(0x5a);
        Ok(())
    }
}
export_plugin!(Fixture);
"#;

    fn write_if_changed(path: &Path, contents: &str) {
        if std::fs::read_to_string(path).ok().as_deref() != Some(contents) {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
    }

    fn copy_tree(from: &Path, to: &Path, edit: &dyn Fn(&Path, String) -> String) {
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let (src, dst) = (entry.path(), to.join(entry.file_name()));
            if entry.file_type().unwrap().is_dir() {
                if entry.file_name() != "target" {
                    copy_tree(&src, &dst, edit);
                }
            } else {
                let text = std::fs::read_to_string(&src).unwrap();
                write_if_changed(&dst, &edit(&src, text));
            }
        }
    }

    /// Builds `plugin_src` as cdylib `lib<name>.so` in its own workspace under
    /// `target/fixtures/<name>` against the given copy of `plugin-api`, with `profile_args`
    /// passed to cargo build (e.g. `["--release"]`). Builds are incremental across runs.
    pub fn build_plugin(
        name: &str,
        api: &ApiCopy<'_>,
        plugin_src: &str,
        profile_args: &[&str],
    ) -> PathBuf {
        build_plugins(name, api, &[(name, plugin_src)], profile_args).remove(0)
    }

    /// Like [`build_plugin`], for several plugin crates `(name, source)` sharing one workspace
    /// (and one build of the `plugin-api` copy).
    pub fn build_plugins(
        workspace_name: &str,
        api: &ApiCopy<'_>,
        plugins: &[(&str, &str)],
        profile_args: &[&str],
    ) -> Vec<PathBuf> {
        build(&Workspace {
            name: workspace_name,
            api,
            plugins,
            cargo_args: profile_args,
            ..Workspace::default()
        })
        .plugins
    }

    /// A fixture workspace: a copy of `plugin-api`, plugin crates, and maybe a copy of the shim.
    pub struct Workspace<'a> {
        /// Names the workspace (and its directory under `target/fixtures`).
        pub name: &'a str,
        /// The `plugin-api` copy.
        pub api: &'a ApiCopy<'a>,
        /// Plugin crates: (crate name, `src/lib.rs`).
        pub plugins: &'a [(&'a str, &'a str)],
        /// Also build a copy of the shim (`host/`) with these edits (file relative to `host/`).
        pub shim_edits: Option<&'a [(&'a str, &'a str, &'a str)]>,
        /// Extra arguments to `cargo build` (`--release`, `--config ...`).
        pub cargo_args: &'a [&'a str],
        /// Extra environment for `cargo build` (`RUSTFLAGS`, ...).
        pub env: &'a [(&'a str, &'a str)],
        /// The target directory under `target/fixtures`: builds with other flags need their own,
        /// or cargo rebuilds everything back and forth.
        pub target: &'a str,
    }

    /// The shim's own `plugin-api`, unchanged.
    pub const SAME_API: ApiCopy<'static> = ApiCopy {
        version: "1.0.0",
        edits: &[],
    };

    impl Default for Workspace<'_> {
        fn default() -> Self {
            Workspace {
                name: "",
                api: &SAME_API,
                plugins: &[],
                shim_edits: None,
                cargo_args: &[],
                env: &[],
                target: "target",
            }
        }
    }

    /// What [`build`] made.
    pub struct Built {
        /// The shim copy, if one was asked for.
        pub shim: Option<PathBuf>,
        /// The plugins, in order.
        pub plugins: Vec<PathBuf>,
    }

    /// Removes what `to` has and `from` no longer has (a file moved since the last copy), so
    /// the copy is the source as it is now.
    fn remove_stale(from: &Path, to: &Path) {
        let Ok(entries) = std::fs::read_dir(to) else {
            return;
        };
        for entry in entries.flatten() {
            let (src, dst) = (from.join(entry.file_name()), entry.path());
            if entry.file_name() == "target" {
                continue;
            }
            if !src.exists() {
                let _ = std::fs::remove_dir_all(&dst).or_else(|_| std::fs::remove_file(&dst));
            } else if dst.is_dir() {
                remove_stale(&src, &dst);
            }
        }
    }

    fn copy_with_edits(
        from: &Path,
        to: &Path,
        edits: &[(&str, &str, &str)],
        version: Option<&str>,
    ) {
        remove_stale(from, to);
        for (file, _, _) in edits {
            assert!(
                from.join(file).is_file(),
                "fixture edit names no file: {file}"
            );
        }
        copy_tree(from, to, &|src, mut text| {
            for (file, old, new) in edits {
                if src == from.join(file) {
                    assert!(
                        text.contains(old),
                        "fixture edit target not found in {file}: {old}"
                    );
                    text = text.replacen(old, new, 1);
                }
            }
            if let Some(version) = version {
                if src == from.join("Cargo.toml") {
                    text = text.replacen(
                        "version = \"1.0.0\"",
                        &format!("version = \"{version}\""),
                        1,
                    );
                }
            }
            text
        });
    }

    /// Builds a fixture workspace (incrementally across runs).
    pub fn build(ws: &Workspace<'_>) -> Built {
        let root = workspace();
        let dir = root.join("target").join("fixtures").join(ws.name);
        // Fixtures share target dirs, and cargo names a path package's artifacts by its path
        // relative to the workspace root: so each fixture's copies get paths of their own.
        let api_rel = format!("api-{}", ws.name);
        let shim_rel = format!("shim-{}", ws.name);
        copy_with_edits(
            &root.join("plugin-api"),
            &dir.join(&api_rel),
            ws.api.edits,
            Some(ws.api.version),
        );
        if let Some(edits) = ws.shim_edits {
            copy_with_edits(&root.join("host"), &dir.join(&shim_rel), edits, None);
        }
        // The workspace's shared settings, without its members.
        let main_manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let shared = &main_manifest[main_manifest
            .find("[workspace.package]")
            .expect("workspace.package")..];
        let shared = shared
            .replace(
                "path = \"plugin-api\", version = \"1.0.0\"",
                &format!("path = \"{api_rel}\", version = \"{}\"", ws.api.version),
            )
            .replace(
                "path = \"plugin-api/macros\"",
                &format!("path = \"{api_rel}/macros\""),
            );
        let mut members: Vec<String> =
            vec![format!("\"{api_rel}\""), format!("\"{api_rel}/macros\"")];
        if ws.shim_edits.is_some() {
            members.push(format!("\"{shim_rel}\""));
        }
        members.extend(ws.plugins.iter().map(|(name, _)| format!("\"{name}\"")));
        write_if_changed(
            &dir.join("Cargo.toml"),
            &format!(
                "[workspace]\nresolver = \"2\"\nmembers = [{}]\n\n{shared}",
                members.join(", ")
            ),
        );
        for (name, src) in ws.plugins {
            write_if_changed(
                &dir.join(name).join("Cargo.toml"),
                &format!(
                    "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nrustshim-plugin-api.workspace = true\n"
                ),
            );
            write_if_changed(&dir.join(name).join("src/lib.rs"), src);
        }
        if !dir.join("Cargo.lock").exists() {
            std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let target = root.join("target").join("fixtures").join(ws.target);
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet"])
            .args(ws.cargo_args)
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(&dir);
        cmd.envs(ws.env.iter().copied());
        if ws.shim_edits.is_some() {
            cmd.args(["-p", "nbdkit-rustshim-plugin"]);
        }
        for (name, _) in ws.plugins {
            cmd.args(["-p", name]);
        }
        let out = cmd.output().expect("cargo runs");
        assert!(
            out.status.success(),
            "building fixture {} failed:\n{}",
            ws.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let profile = if ws.cargo_args.contains(&"--release") {
            "release"
        } else {
            "debug"
        };
        Built {
            shim: ws
                .shim_edits
                .map(|_| target.join(profile).join("libnbdkit_rustshim_plugin.so")),
            plugins: ws
                .plugins
                .iter()
                .map(|(name, _)| target.join(profile).join(format!("lib{name}.so")))
                .collect(),
        }
    }
}

/// nbdkit serving in the background (`-f -U SOCKET`), its stderr in a log file; killed on drop.
pub struct BackgroundNbdkit {
    child: std::process::Child,
    /// The Unix socket.
    pub socket: PathBuf,
    /// nbdkit's stderr.
    pub log: PathBuf,
    _dir: TempDir,
}

impl BackgroundNbdkit {
    /// Starts `nbdkit -f -U SOCKET [nbdkit_options] SHIM args...` and waits for the socket.
    pub fn start<S: AsRef<str>>(nbdkit_options: &[&str], args: &[S]) -> BackgroundNbdkit {
        BackgroundNbdkit::start_with(nbdkit_options, &nbdkit_argv(args))
    }

    /// Starts `nbdkit -f -U SOCKET [nbdkit_options] ARGV[1..]` (`argv` an nbdkit command line,
    /// with filters and any plugin) and waits for the socket.
    pub fn start_with(nbdkit_options: &[&str], argv: &[String]) -> BackgroundNbdkit {
        let dir = TempDir::new("server");
        let socket = dir.join("nbd.sock");
        let log = dir.join("nbdkit.log");
        let child = rustshim_harness::command("nbdkit")
            // The shim's private copies of plugins go here, so they go with the directory even
            // if nbdkit has to be killed.
            .env("TMPDIR", dir.path())
            .arg("-f")
            .arg("-U")
            .arg(&socket)
            .args(nbdkit_options)
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("nbdkit starts");
        let mut server = BackgroundNbdkit {
            child,
            socket,
            log,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !server.socket.exists() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "nbdkit exited ({status}) before serving:\n{}",
                    server.log_text()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nbdkit did not create its socket:\n{}",
                server.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        server
    }

    /// The URI of the export.
    pub fn uri(&self) -> String {
        format!("nbd+unix:///?socket={}", self.socket.display())
    }

    /// What nbdkit has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has `count` lines containing `needle`; returns the last of them.
    #[track_caller]
    pub fn wait_for_log(&self, needle: &str, count: usize) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let text = self.log_text();
            let hits: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
            if hits.len() >= count {
                return hits[count - 1].to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {count}x '{needle}' in nbdkit's log:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// nbdkit's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether nbdkit is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Runs a Python script with `nbd` imported and `URI`/`SOCKET` defined.
    pub fn python(&self, script: &str) -> Run {
        let program = format!(
            "import nbd, os, sys, time\nURI = {:?}\nSOCKET = {:?}\n{script}\n",
            self.uri(),
            self.socket.display().to_string()
        );
        run(command("/usr/bin/python3").arg("-c").arg(program))
    }
}

impl Drop for BackgroundNbdkit {
    /// SIGTERM, so nbdkit shuts down as it would for an admin (cleanup, unload); SIGKILL only if
    /// it does not go within 10 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while let Ok(None) = self.child.try_wait() {
                if std::time::Instant::now() > deadline {
                    let _ = self.child.kill();
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let _ = self.child.wait();
    }
}

/// Ways a new build lands on a plugin's path.
#[derive(Copy, Clone, Debug)]
pub enum Install {
    /// Write to a temporary name, rename over (cargo, `install`, most tools).
    RenameOver,
    /// Truncate and rewrite the same file (`cp new old`).
    CopyInPlace,
    /// Remove, then create anew.
    DeleteCreate,
}

/// Puts `from`'s contents at `to` the given way.
pub fn install_build(from: &Path, to: &Path, how: Install) {
    match how {
        Install::RenameOver => {
            let tmp = to.with_extension("so.tmp");
            std::fs::copy(from, &tmp).unwrap();
            std::fs::rename(&tmp, to).unwrap();
        }
        Install::CopyInPlace => {
            std::fs::copy(from, to).unwrap();
        }
        Install::DeleteCreate => {
            let _ = std::fs::remove_file(to);
            std::fs::copy(from, to).unwrap();
        }
    }
}

/// Another build of `plugin`: the same code with bytes appended (which the loader ignores),
/// so a different file, as a rebuild would give.
pub fn rebuilt(plugin: &Path, dir: &TempDir, tag: &str) -> PathBuf {
    let mut bytes = std::fs::read(plugin).unwrap();
    bytes.extend_from_slice(format!("\0rebuilt {tag}\0").as_bytes());
    let path = dir.join(&format!("rebuilt-{tag}.so"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The extents in `nbdinfo --map` output: (offset, length, type).
pub fn parse_map(text: &str) -> Vec<(u64, u64, u32)> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 3, "not a map line: {line:?}");
            (
                fields[0].parse().unwrap(),
                fields[1].parse().unwrap(),
                fields[2].parse().unwrap(),
            )
        })
        .collect()
}

pub mod filters;
