//! The Debian package as an admin meets it. `cargo xtask package` builds
//! `target/debian/nbdkit-rustshim-plugin_VERSION_ARCH.deb`; its files and control fields are
//! checked with `dpkg-deb`; then it is installed with `dpkg -i` into a throwaway copy of a fresh
//! Debian 12 and of a fresh Debian 13 root (`cargo xtask roots package`: minbase with nbdkit,
//! libnbd-bin and man-db), where `nbdkit rustshim plugin=memory` must serve, `man` must find and
//! render the man page without warnings and with every key `nbdkit rustshim --help` prints, and
//! `dpkg -r` must leave nothing of the package behind.
//!
//! The roots are the test's own, whatever `RUSTSHIM_ROOT` says: every leg of `cargo xtask test
//! --nbdkit all` runs all of it. The host itself is never installed into.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rustshim_tests::*;

const PACKAGE: &str = "nbdkit-rustshim-plugin";
/// Debian's nbdkit plugindir, where the shim goes.
const PLUGINDIR: &str = "/usr/lib/x86_64-linux-gnu/nbdkit/plugins";
/// The man page, as installed.
const MAN_PAGE: &str = "/usr/share/man/man1/nbdkit-rustshim-plugin.1.gz";
/// The package's doc directory.
const DOC: &str = "/usr/share/doc/nbdkit-rustshim-plugin";
/// The newest glibc the package may need: Debian 12's.
const BOOKWORM_GLIBC: u32 = 36;

/// `cargo xtask ARGS` on the host (never in a root), under `timeout`: the first package build
/// compiles the release profile, the first `roots package` downloads two Debian systems.
fn xtask(args: &[&str]) -> Run {
    run_within(
        Command::new("timeout")
            .args(["--kill-after=5", "1800", env!("CARGO")])
            .args(["run", "--quiet", "-p", "xtask", "--"])
            .args(args)
            .current_dir(workspace())
            .stdin(std::process::Stdio::null()),
        Duration::from_secs(1830),
    )
}

/// The package, built once per test binary.
fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let out = xtask(&["package"]).ok();
        let deb = out
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix("package: wrote "))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("no `package: wrote` line:\n{}", out.stdout));
        assert!(deb.is_file(), "{} is missing", deb.display());
        deb
    })
}

/// The cached fresh root of a Debian release (`bookworm`, `trixie`), made if missing.
fn fresh_root(suite: &str) -> PathBuf {
    static ROOTS: OnceLock<String> = OnceLock::new();
    let said = ROOTS.get_or_init(|| xtask(&["roots", "package"]).ok().stdout);
    said.lines()
        .filter_map(|line| line.strip_prefix("roots: "))
        .filter(|line| line.contains(&format!("(Debian {suite}, ")))
        .find_map(|line| line.split_once(" is ready in "))
        .map(|(_, dir)| PathBuf::from(dir))
        .unwrap_or_else(|| panic!("no ready root for {suite}:\n{said}"))
}

/// `dpkg-deb ARGS DEB` on the host.
fn dpkg_deb(args: &[&str]) -> String {
    run(Command::new("dpkg-deb").args(args).arg(deb()))
        .ok()
        .stdout
}

/// The keys `nbdkit SHIM --help` lists for the shim: its lines that start with `KEY=`.
fn shim_keys(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, _)| key)
        .filter(|key| {
            key.starts_with(|c: char| c.is_ascii_lowercase())
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn the_package_holds_the_shim_the_plugins_the_man_page_and_the_copyright() {
    let field = |name: &str| {
        dpkg_deb(&["-f"])
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")).map(str::to_string))
    };
    assert_eq!(field("Package").as_deref(), Some(PACKAGE));
    assert_eq!(field("Architecture").as_deref(), Some("amd64"));
    let manifest = std::fs::read_to_string(workspace().join("host/Cargo.toml")).unwrap();
    let version = field("Version").unwrap();
    assert!(
        manifest.contains(&format!("\nversion = \"{version}\"\n")),
        "Version: {version} is not the shim crate's"
    );
    assert!(
        deb().ends_with(format!("{PACKAGE}_{version}_amd64.deb")),
        "{}",
        deb().display()
    );
    let depends = field("Depends").unwrap();
    assert!(depends.starts_with("nbdkit (>= 1.32), "), "{depends}");
    // The glibc the shared objects need must be Debian 12's or older.
    let glibc = depends
        .split(", ")
        .find_map(|dep| dep.strip_prefix("libc6 (>= 2."))
        .and_then(|minor| minor.trim_end_matches(')').parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no libc6 (>= 2.N) in Depends: {depends}"));
    assert!(glibc <= BOOKWORM_GLIBC, "{depends}");
    for name in ["Maintainer", "Installed-Size", "Section", "Description"] {
        assert!(field(name).is_some(), "no {name}:");
    }

    // Every entry root's, files 0644, directories 0755; exactly these files.
    let mut files = Vec::new();
    for line in dpkg_deb(&["-c"]).lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (mode, owner, path) = (cols[0], cols[1], cols[5]);
        assert_eq!(owner, "root/root", "{line}");
        match mode {
            "drwxr-xr-x" => assert!(path.ends_with('/'), "{line}"),
            "-rw-r--r--" => files.push(path.trim_start_matches('.').to_string()),
            _ => panic!("unexpected mode: {line}"),
        }
    }
    files.sort();
    let mut expected = vec![
        format!("{PLUGINDIR}/nbdkit-rustshim-plugin.so"),
        format!("{DOC}/changelog.gz"),
        format!("{DOC}/copyright"),
        MAN_PAGE.to_string(),
    ];
    for name in ["null", "memory", "file"] {
        expected.push(format!("{PLUGINDIR}/rustshim/librustshim_{name}.so"));
    }
    expected.sort();
    assert_eq!(files, expected);

    // The copyright file is machine-readable, with both licences of `MIT OR Apache-2.0`.
    let dir = temp_dir("package-contents");
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb())
        .arg(dir.path()))
    .ok();
    let copyright = std::fs::read_to_string(dir.path().join(&DOC[1..]).join("copyright")).unwrap();
    assert!(
        copyright.starts_with(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        ),
        "{copyright}"
    );
    for paragraph in [
        "\nFiles: *\n",
        "\nLicense: MIT or Apache-2.0\n",
        "\nLicense: MIT\n",
        "\nLicense: Apache-2.0\n",
    ] {
        assert!(
            copyright.contains(paragraph),
            "no {paragraph:?}:\n{copyright}"
        );
    }
}

#[test]
fn on_debian_12_it_installs_serves_documents_itself_and_goes_cleanly() {
    try_in_fresh_root("bookworm");
}

#[test]
fn on_debian_13_it_installs_serves_documents_itself_and_goes_cleanly() {
    try_in_fresh_root("trixie");
}

/// Installs the package into a throwaway copy of the fresh root of `suite`, uses it, removes it.
fn try_in_fresh_root(suite: &str) {
    let deb = deb();
    let cached = fresh_root(suite);
    let scratch = temp_dir(&format!("package-{suite}"));
    let root = scratch.join("root");
    run(Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(&cached)
        .arg(&root))
    .ok();
    let in_root = |program: &str| {
        let mut cmd = rustshim_harness::command_in(Some(&root), "timeout");
        cmd.args(["--kill-after=5", &TIMEOUT_SECS.to_string(), program])
            .env("LC_ALL", "C.UTF-8")
            .env("MANWIDTH", "80")
            .current_dir("/");
        cmd
    };
    let status = || run(in_root("dpkg-query").args(["-W", "-f=${Status}", PACKAGE])).stdout;

    run(in_root("dpkg").arg("-i").arg(deb)).ok();
    assert_eq!(status(), "install ok installed");

    // It serves, with the example plugin found by name.
    let size = run(in_root("nbdkit").args([
        "-U",
        "-",
        "rustshim",
        "plugin=memory",
        "size=1G",
        "--run",
        "nbdinfo --size \"$uri\"",
    ]))
    .ok();
    assert_eq!(size.stdout.trim(), "1073741824", "{}", size.stderr);

    // `man` finds the page, which renders without warnings and has every key of the shim.
    let help = run(in_root("nbdkit").args(["rustshim", "--help"]))
        .ok()
        .stdout;
    let keys = shim_keys(&help);
    assert!(
        keys.iter().any(|key| key == "plugin"),
        "{keys:?} from:\n{help}"
    );
    let page = run(in_root("man").arg(PACKAGE)).ok();
    assert!(
        page.stdout
            .contains("nbdkit-rustshim-plugin - nbdkit plugin"),
        "{}{}",
        page.stdout,
        page.stderr
    );
    for key in &keys {
        assert!(
            page.stdout.contains(&format!("{key}=")),
            "no {key}= in:\n{}",
            page.stdout
        );
    }
    let warnings = run(in_root("man").args(["--warnings", "-l", MAN_PAGE])).ok();
    assert_eq!(warnings.stderr, "", "man --warnings -l {MAN_PAGE}");
    assert!(warnings.stdout.contains("HOT RELOAD"));

    // `dpkg -r` leaves nothing: no file of the package, no directory of its own.
    run(in_root("dpkg").args(["-r", PACKAGE])).ok();
    let after = status();
    assert!(
        after.is_empty() || after.ends_with(" not-installed"),
        "dpkg still knows it: {after}"
    );
    let leftovers: Vec<String> = dpkg_deb(&["-c"])
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .map(|path| path.trim_start_matches('.').trim_end_matches('/'))
        .filter(|path| path.contains("rustshim"))
        .filter(|path| root.join(&path[1..]).symlink_metadata().is_ok())
        .map(str::to_string)
        .collect();
    assert!(
        leftovers.is_empty(),
        "left behind in {suite}: {leftovers:?}"
    );
    let plugins = std::fs::read_dir(root.join(&PLUGINDIR[1..])).unwrap();
    for entry in plugins {
        let name = entry.unwrap().file_name();
        assert!(!name.to_string_lossy().contains("rustshim"), "{name:?}");
    }
}

#[test]
fn shim_keys_are_read_from_the_help() {
    let help = "plugin: rustshim (nbdkit Rust plugin shim)\n\
                (path)\n\
                Loads a Rust plugin (plugin=PATH) and forwards...\n\
                plugin=PATH|NAME       (required) The Rust plugin to load: a .so built with\n\
                                       is the same; later bare arguments go to the plugin's magic key.\n\
                allow-insecure-plugin=true\n\
                \x20                      Load the plugin even if others could write to it or to a\n\
                reload=watch           Load each new build\n\
                [KEY=VALUE ...]        Anything else\n";
    assert_eq!(
        shim_keys(help),
        ["plugin", "allow-insecure-plugin", "reload"]
    );
}
