//! The Debian packages as an admin meets them. `cargo xtask package` builds
//! `target/debian/nbdkit-rustshim-plugin_VERSION_ARCH.deb`; its files and control fields are
//! checked with `dpkg-deb`; then it is installed with `dpkg -i` into a throwaway copy of a fresh
//! Debian 12 and of a fresh Debian 13 root (`cargo xtask roots package`: minbase with nbdkit,
//! libnbd-bin and man-db), where `nbdkit rustshim plugin=memory` and `nbdkit --filter=rustshim
//! ... filter=passthrough` must serve, `cargo-rustshim` must run, `man` must find and render the
//! man page without warnings and with every key `nbdkit rustshim --help` prints, and `dpkg -r`
//! must leave nothing of the package behind.
//!
//! A third party's packages, made as a vendor would: a plugin crate and a filter crate written by
//! `cargo xtask new-plugin`, packaged by `cargo rustshim package` (the built
//! `target/debug/cargo-rustshim`). Their files, link and control fields are checked with
//! `dpkg-deb`; in the fresh roots, each must be refused without the shim's package, then serve
//! as `nbdkit NAME` (the plugin) and `filter=NAME` (the filter) beside it, and go with `dpkg -r`
//! leaving the shim serving.
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
/// Debian's nbdkit filterdir, where the filter shim goes.
const FILTERDIR: &str = "/usr/lib/x86_64-linux-gnu/nbdkit/filters";
/// The example plugins and filters the package carries.
const PLUGINS: &[&str] = &["null", "memory", "file"];
const FILTERS: &[&str] = &["passthrough", "delay", "error", "swab"];
/// The commands `cargo rustshim --help` lists.
const AUTHOR_COMMANDS: &[&str] = &["new", "run", "test", "package", "doctor"];
/// A third party's plugin and filter crates (the filter inverts the data, as the template's
/// does), and the version `cargo xtask new-plugin` gives them.
const VENDOR_PLUGIN: &str = "acme-disk";
const VENDOR_FILTER: &str = "acme-invert";
const VENDOR_VERSION: &str = "0.1.0";
/// Their packages, named as Debian names nbdkit's (`nbdkit-plugin-python`).
const VENDOR_PLUGIN_PACKAGE: &str = "nbdkit-plugin-acme-disk";
const VENDOR_FILTER_PACKAGE: &str = "nbdkit-filter-acme-invert";
/// The man page, as installed.
const MAN_PAGE: &str = "/usr/share/man/man1/nbdkit-rustshim-plugin.1.gz";
/// cargo-rustshim's man page, as installed.
const CARGO_RUSTSHIM_PAGE: &str = "/usr/share/man/man1/cargo-rustshim.1.gz";
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
fn dpkg_deb(deb: &Path, args: &[&str]) -> String {
    run(Command::new("dpkg-deb").args(args).arg(deb))
        .ok()
        .stdout
}

/// The control field `name` of a package.
fn field(deb: &Path, name: &str) -> Option<String> {
    dpkg_deb(deb, &["-f"])
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")).map(str::to_string))
}

/// One entry of `dpkg-deb -c`: its mode (`-rw-r--r--`), owner, path (from `/`, directories
/// without their trailing `/`) and, for a link, what it points to.
#[derive(Debug)]
struct Entry {
    mode: String,
    owner: String,
    path: String,
    link: Option<String>,
}

/// What a package installs, as `dpkg-deb -c` lists it.
fn contents(deb: &Path) -> Vec<Entry> {
    dpkg_deb(deb, &["-c"])
        .lines()
        .map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert!(cols.len() >= 6, "{line}");
            Entry {
                mode: cols[0].to_string(),
                owner: cols[1].to_string(),
                path: cols[5]
                    .trim_start_matches('.')
                    .trim_end_matches('/')
                    .to_string(),
                link: (cols.get(6) == Some(&"->")).then(|| cols[7..].join(" ")),
            }
        })
        .filter(|entry| !entry.path.is_empty())
        .collect()
}

/// The files and links of a package (not its directories), each as `MODE PATH[ -> TARGET]`,
/// sorted as these lines (so by mode first).
fn files_and_links(deb: &Path) -> Vec<String> {
    let mut listed: Vec<String> = contents(deb)
        .into_iter()
        .filter(|entry| !entry.mode.starts_with('d'))
        .map(|entry| match entry.link {
            Some(target) => format!("{} {} -> {target}", entry.mode, entry.path),
            None => format!("{} {}", entry.mode, entry.path),
        })
        .collect();
    listed.sort();
    listed
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
fn the_package_holds_the_shims_the_examples_cargo_rustshim_the_man_page_and_the_copyright() {
    let field = |name: &str| field(deb(), name);
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
    // The ABI it speaks, as a virtual package a plugin's package depends on.
    assert_eq!(
        field("Provides").as_deref(),
        Some(format!("rustshim-abi-1 (= {API_VERSION})").as_str())
    );
    assert_eq!(field("Suggests").as_deref(), Some("cargo"));
    // The glibc the shared objects and cargo-rustshim need must be Debian 12's or older.
    let glibc = depends
        .split(", ")
        .find_map(|dep| dep.strip_prefix("libc6 (>= 2."))
        .and_then(|minor| minor.trim_end_matches(')').parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no libc6 (>= 2.N) in Depends: {depends}"));
    assert!(glibc <= BOOKWORM_GLIBC, "{depends}");
    for name in ["Maintainer", "Installed-Size", "Section", "Description"] {
        assert!(field(name).is_some(), "no {name}:");
    }

    // Every entry root's, directories 0755, cargo-rustshim 0755 (a program), every other file
    // 0644 (shared objects as Debian installs libraries); exactly these files, no links.
    for entry in contents(deb()) {
        assert_eq!(entry.owner, "root/root", "{entry:?}");
        if entry.mode.starts_with('d') {
            assert_eq!(entry.mode, "drwxr-xr-x", "{entry:?}");
        }
    }
    let mut expected = vec![
        format!("-rw-r--r-- {PLUGINDIR}/nbdkit-rustshim-plugin.so"),
        format!("-rw-r--r-- {FILTERDIR}/nbdkit-rustshim-filter.so"),
        format!("-rw-r--r-- {DOC}/changelog.gz"),
        format!("-rw-r--r-- {DOC}/copyright"),
        format!("-rw-r--r-- {MAN_PAGE}"),
        format!("-rw-r--r-- {CARGO_RUSTSHIM_PAGE}"),
        "-rwxr-xr-x /usr/bin/cargo-rustshim".to_string(),
    ];
    for name in PLUGINS {
        expected.push(format!(
            "-rw-r--r-- {PLUGINDIR}/rustshim/librustshim_{name}.so"
        ));
    }
    for name in FILTERS {
        expected.push(format!(
            "-rw-r--r-- {FILTERDIR}/rustshim/librustshim_filter_{name}.so"
        ));
    }
    expected.sort();
    assert_eq!(files_and_links(deb()), expected);

    // The copyright file is machine-readable, with both licences of `MIT OR Apache-2.0`.
    let dir = temp_dir("package-contents");
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb())
        .arg(dir.path()))
    .ok();
    // The filter shim is the plugin shim, a copy (a link would share the loaded object).
    let shim = std::fs::read(dir.join(&PLUGINDIR[1..]).join("nbdkit-rustshim-plugin.so")).unwrap();
    let filter_shim =
        std::fs::read(dir.join(&FILTERDIR[1..]).join("nbdkit-rustshim-filter.so")).unwrap();
    assert!(shim == filter_shim, "the filter shim is not the shim");

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

/// A throwaway copy of the fresh root of `suite`: the directory holding it (removed on drop)
/// and the root.
fn fresh_copy(suite: &str) -> (TempDir, PathBuf) {
    let cached = fresh_root(suite);
    let scratch = temp_dir(&format!("package-{suite}"));
    let root = scratch.join("root");
    run(Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(&cached)
        .arg(&root))
    .ok();
    (scratch, root)
}

/// `program` inside `root`, under `timeout`, in the C locale and 80 columns.
fn in_root(root: &Path, program: &str) -> Command {
    let mut cmd = rustshim_harness::command_in(Some(root), "timeout");
    cmd.args(["--kill-after=5", &TIMEOUT_SECS.to_string(), program])
        .env("LC_ALL", "C.UTF-8")
        .env("MANWIDTH", "80")
        .current_dir("/");
    cmd
}

/// What dpkg says of `package` in `root`: `install ok installed`, or empty if it never heard
/// of it.
fn dpkg_status(root: &Path, package: &str) -> String {
    run(in_root(root, "dpkg-query").args(["-W", "-f=${Status}", package])).stdout
}

/// Asserts that dpkg has forgotten `package` in `root` and that nothing it installed is there:
/// no file, no link, no directory named for it (directories it shares with others stay).
#[track_caller]
fn assert_gone(root: &Path, package: &str, deb: &Path) {
    let after = dpkg_status(root, package);
    assert!(
        after.is_empty() || after.ends_with(" not-installed"),
        "dpkg still knows {package}: {after}"
    );
    let leftovers: Vec<String> = contents(deb)
        .into_iter()
        .filter(|entry| !entry.mode.starts_with('d') || entry.path.contains(package))
        .map(|entry| entry.path)
        .filter(|path| root.join(&path[1..]).symlink_metadata().is_ok())
        .collect();
    assert!(leftovers.is_empty(), "{package} left behind: {leftovers:?}");
}

/// `nbdkit -U - ARGS --run 'nbdinfo --size "$uri"'` in `root`: the size served.
fn served_size(root: &Path, args: &[&str]) -> String {
    let out = run(in_root(root, "nbdkit")
        .args(["-U", "-"])
        .args(args)
        .args(["--run", "nbdinfo --size \"$uri\""]))
    .ok();
    assert_eq!(out.stderr, "", "nbdkit {args:?}");
    out.stdout.trim().to_string()
}

/// Installs the package into a throwaway copy of the fresh root of `suite`, uses it, removes it.
fn try_in_fresh_root(suite: &str) {
    let deb = deb();
    let (_scratch, root) = fresh_copy(suite);
    let root = root.as_path();

    run(in_root(root, "dpkg").arg("-i").arg(deb)).ok();
    assert_eq!(dpkg_status(root, PACKAGE), "install ok installed");

    // It serves, with the example plugin found by name, and with an example filter found by
    // name in front of nbdkit's own memory plugin.
    assert_eq!(
        served_size(root, &["rustshim", "plugin=memory", "size=1G"]),
        "1073741824"
    );
    assert_eq!(
        served_size(
            root,
            &["--filter=rustshim", "memory", "1M", "filter=passthrough"]
        ),
        "1048576"
    );

    // The author's tool runs (there is no cargo here to run it as `cargo rustshim`).
    let help = run(in_root(root, "/usr/bin/cargo-rustshim").args(["rustshim", "--help"])).ok();
    assert!(
        help.stdout.contains("Usage: cargo rustshim <COMMAND>"),
        "{}",
        help.stdout
    );
    for command in AUTHOR_COMMANDS {
        assert!(
            help.stdout
                .lines()
                .any(|line| line.trim_start().starts_with(&format!("{command} "))),
            "no command {command} in:\n{}",
            help.stdout
        );
    }

    // `man` finds the page, which renders without warnings and has every key of the shim.
    let help = run(in_root(root, "nbdkit").args(["rustshim", "--help"]))
        .ok()
        .stdout;
    let keys = shim_keys(&help);
    assert!(
        keys.iter().any(|key| key == "plugin"),
        "{keys:?} from:\n{help}"
    );
    let page = run(in_root(root, "man").arg(PACKAGE)).ok();
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
    let warnings = run(in_root(root, "man").args(["--warnings", "-l", MAN_PAGE])).ok();
    assert_eq!(warnings.stderr, "", "man --warnings -l {MAN_PAGE}");
    assert!(warnings.stdout.contains("HOT RELOAD"));
    // And cargo-rustshim's, with every command its --help lists.
    let page = run(in_root(root, "man").args(["--warnings", "-l", CARGO_RUSTSHIM_PAGE])).ok();
    assert_eq!(page.stderr, "", "man --warnings -l {CARGO_RUSTSHIM_PAGE}");
    for command in ["new", "run", "test", "package", "doctor"] {
        assert!(
            page.stdout.contains(&format!("cargo rustshim {command}")),
            "no `cargo rustshim {command}` in:\n{}",
            page.stdout
        );
    }

    // `dpkg -r` leaves nothing: no file of the package, no directory of its own.
    run(in_root(root, "dpkg").args(["-r", PACKAGE])).ok();
    assert_gone(root, PACKAGE, deb);
    for dir in [PLUGINDIR, FILTERDIR] {
        for entry in std::fs::read_dir(root.join(&dir[1..])).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(
                !name.to_string_lossy().contains("rustshim"),
                "{dir}/{name:?}"
            );
        }
    }
}

/// A third party's crate, written anew by `cargo xtask new-plugin` (this checkout's plugin-api)
/// where the authors' tests keep generated crates.
fn vendor_crate(name: &str, extra: &[&str]) -> PathBuf {
    let dir = authors_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let out = xtask_new_plugin(name, &dir, extra).ok();
    assert!(out.stdout.contains("created the "), "{}", out.stdout);
    dir
}

/// `cargo rustshim package --manifest-path CRATE/Cargo.toml` as a vendor runs it (the built
/// `cargo-rustshim`, as cargo runs it, with `CARGO` set), from outside the crate, into the
/// authors' shared target directory (so only the crate itself is rebuilt); returns the package
/// it wrote.
fn cargo_rustshim_package(dir: &Path) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| cargo_build(&["-p", "cargo-rustshim"], "cargo-rustshim"));
    let out = run_cargo(
        cargo_rustshim(&authors_dir(), &["package", "--manifest-path"])
            .arg(dir.join("Cargo.toml"))
            .env_remove(rustshim_harness::ROOT_ENV),
    )
    .ok();
    let deb = out
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("package: wrote "))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no `package: wrote` line:\n{}", out.stdout));
    assert!(deb.is_file(), "{} is missing", deb.display());
    deb
}

/// A third party's packages: (the plugin's, the filter's), made once per test binary.
fn vendor_debs() -> &'static (PathBuf, PathBuf) {
    static DEBS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    DEBS.get_or_init(|| {
        let plugin = cargo_rustshim_package(&vendor_crate(VENDOR_PLUGIN, &[]));
        let filter = cargo_rustshim_package(&vendor_crate(VENDOR_FILTER, &["--filter"]));
        (plugin, filter)
    })
}

#[test]
fn a_vendors_packages_hold_the_plugin_with_its_link_and_the_filter() {
    let (plugin, filter) = vendor_debs();
    for (deb, name, package, kind) in [
        (plugin, VENDOR_PLUGIN, VENDOR_PLUGIN_PACKAGE, "plugin"),
        (filter, VENDOR_FILTER, VENDOR_FILTER_PACKAGE, "filter"),
    ] {
        // Under the crate's target directory, named as Debian names packages.
        assert_eq!(
            *deb,
            authors_target()
                .join("debian")
                .join(format!("{package}_{VENDOR_VERSION}_amd64.deb"))
        );
        assert_eq!(field(deb, "Package").as_deref(), Some(package));
        // The crates have no Cargo.toml `description`: the summary names the plugin (the
        // crate's name, which nbdkit knows it by) as README.md says.
        assert_eq!(
            field(deb, "Description"),
            Some(format!("nbdkit {kind} {name}, written in Rust"))
        );
        assert_eq!(field(deb, "Version").as_deref(), Some(VENDOR_VERSION));
        assert_eq!(field(deb, "Architecture").as_deref(), Some("amd64"));
        let depends = field(deb, "Depends").unwrap();
        for needed in [
            "nbdkit-rustshim-plugin".to_string(),
            format!("rustshim-abi-1 (>= {API_VERSION})"),
        ] {
            assert!(
                depends.split(", ").any(|dep| dep == needed),
                "no {needed} in {depends}"
            );
        }
        // Description: (the last field) fits 80 columns, as apt and dpkg show it.
        let control = dpkg_deb(deb, &["-f"]);
        let description = &control[control.find("\nDescription: ").unwrap()..];
        for line in description.lines() {
            assert!(line.len() <= 80, "a line over 80 columns: {line:?}");
        }
        for entry in contents(deb) {
            assert_eq!(entry.owner, "root/root", "{entry:?}");
            if entry.mode.starts_with('d') {
                assert_eq!(entry.mode, "drwxr-xr-x", "{entry:?}");
            }
        }
    }

    // The plugin and, beside it, the link that makes `nbdkit NAME` load the shim as NAME.
    assert_eq!(
        files_and_links(plugin),
        [
            format!("-rw-r--r-- {PLUGINDIR}/rustshim/lib{VENDOR_PLUGIN}.so"),
            format!("-rw-r--r-- /usr/share/doc/{VENDOR_PLUGIN_PACKAGE}/changelog.gz"),
            format!("-rw-r--r-- /usr/share/doc/{VENDOR_PLUGIN_PACKAGE}/copyright"),
            format!(
                "lrwxrwxrwx {PLUGINDIR}/nbdkit-{VENDOR_PLUGIN}-plugin.so -> \
                 nbdkit-rustshim-plugin.so"
            ),
        ]
    );
    // The filter, where the filter shim looks for `filter=NAME`; no link.
    assert_eq!(
        files_and_links(filter),
        [
            format!("-rw-r--r-- {FILTERDIR}/rustshim/lib{VENDOR_FILTER}.so"),
            format!("-rw-r--r-- /usr/share/doc/{VENDOR_FILTER_PACKAGE}/changelog.gz"),
            format!("-rw-r--r-- /usr/share/doc/{VENDOR_FILTER_PACKAGE}/copyright"),
        ]
    );
}

#[test]
fn on_debian_12_a_vendors_packages_need_the_shims_then_serve_and_go_cleanly() {
    try_vendor_packages("bookworm");
}

#[test]
fn on_debian_13_a_vendors_packages_need_the_shims_then_serve_and_go_cleanly() {
    try_vendor_packages("trixie");
}

/// Installs a third party's packages into a throwaway copy of the fresh root of `suite`: first
/// the plugin's alone (refused), then with the shim's; serves through both; removes them.
fn try_vendor_packages(suite: &str) {
    let (plugin, filter) = vendor_debs();
    let shim = deb();
    let (_scratch, root) = fresh_copy(suite);
    let root = root.as_path();

    // Without the shim's package, dpkg refuses to set the plugin up, and says why.
    let out = run(in_root(root, "dpkg").arg("-i").arg(plugin)).failed();
    assert!(
        out.stderr.contains(&format!(
            "{VENDOR_PLUGIN_PACKAGE} depends on nbdkit-rustshim-plugin; however:"
        )) && out
            .stderr
            .contains("Package nbdkit-rustshim-plugin is not installed."),
        "{}",
        out.stderr
    );
    assert_ne!(
        dpkg_status(root, VENDOR_PLUGIN_PACKAGE),
        "install ok installed"
    );

    // With it, both are installed, and nbdkit serves the plugin by its own name.
    run(in_root(root, "dpkg").arg("-i").arg(shim).arg(plugin)).ok();
    for package in [PACKAGE, VENDOR_PLUGIN_PACKAGE] {
        assert_eq!(dpkg_status(root, package), "install ok installed");
    }
    // As an admin asks dpkg about it, by the package's name.
    let status = run(in_root(root, "dpkg").args(["-s", VENDOR_PLUGIN_PACKAGE])).ok();
    for line in [
        format!("Package: {VENDOR_PLUGIN_PACKAGE}"),
        "Status: install ok installed".to_string(),
    ] {
        assert!(
            status.stdout.lines().any(|l| l == line),
            "{line}: {}",
            status.stdout
        );
    }
    assert_eq!(served_size(root, &[VENDOR_PLUGIN, "size=1M"]), "1048576");
    let dump = run(in_root(root, "nbdkit").args([VENDOR_PLUGIN, "--dump-plugin"]))
        .ok()
        .stdout;
    assert!(
        dump.lines()
            .any(|line| line == format!("name={VENDOR_PLUGIN}")),
        "{dump}"
    );

    // The filter, found by name in front of nbdkit's memory plugin: the template's inverts
    // the data, so the untouched (zero) disk reads as 0xff through it.
    run(in_root(root, "dpkg").arg("-i").arg(filter)).ok();
    assert_eq!(
        dpkg_status(root, VENDOR_FILTER_PACKAGE),
        "install ok installed"
    );
    let bytes = run(in_root(root, "nbdkit").args([
        "-U",
        "-",
        "--filter=rustshim",
        "memory",
        "1M",
        &format!("filter={VENDOR_FILTER}"),
        "--run",
        "nbdcopy \"$uri\" - | od -An -v -tx1 | tr -s ' ' '\\n' | grep . | uniq -c",
    ]))
    .ok();
    assert_eq!(
        bytes.stdout.split_whitespace().collect::<Vec<_>>(),
        ["1048576", "ff"],
        "{}",
        bytes.stderr
    );

    // Removed, they leave nothing behind, and the shim still serves its own plugins and
    // filters.
    run(in_root(root, "dpkg").args(["-r", VENDOR_PLUGIN_PACKAGE, VENDOR_FILTER_PACKAGE])).ok();
    assert_gone(root, VENDOR_PLUGIN_PACKAGE, plugin);
    assert_gone(root, VENDOR_FILTER_PACKAGE, filter);
    assert_eq!(dpkg_status(root, PACKAGE), "install ok installed");
    assert_eq!(
        served_size(root, &["rustshim", "plugin=memory", "size=1M"]),
        "1048576"
    );
    assert_eq!(
        served_size(
            root,
            &["--filter=rustshim", "memory", "1M", "filter=passthrough"]
        ),
        "1048576"
    );
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

/// The ABI the oldest 1.x shim speaks: a plugin built against anything newer needs more.
const OLDER_ABI: &str = "1.0.0";

/// The shim's package as a release that spoke [`OLDER_ABI`] would be: this one with its
/// `Version:` below this one's and `Provides: rustshim-abi-1 (= 1.0.0)`, written into `dir`.
/// (The shim was first packaged after 1.1.0, so there is no older package to take; dpkg decides
/// from the control fields alone.)
fn older_shim_package(dir: &Path) -> PathBuf {
    let unpacked = dir.join("older-shim");
    run(Command::new("dpkg-deb").arg("-R").arg(deb()).arg(&unpacked)).ok();
    let control = unpacked.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    let provides = format!("Provides: rustshim-abi-1 (= {API_VERSION})\n");
    assert!(text.contains(&provides), "{text}");
    let version = field(deb(), "Version").unwrap();
    let text = text
        .replace(
            &provides,
            &format!("Provides: rustshim-abi-1 (= {OLDER_ABI})\n"),
        )
        .replace(
            &format!("Version: {version}\n"),
            &format!("Version: {version}~abi{OLDER_ABI}\n"),
        );
    std::fs::write(&control, text).unwrap();
    let older = dir.join(format!("{PACKAGE}_older_amd64.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&unpacked)
        .arg(&older))
    .ok();
    assert_eq!(
        field(&older, "Provides").as_deref(),
        Some(format!("rustshim-abi-1 (= {OLDER_ABI})").as_str())
    );
    older
}

#[test]
fn on_debian_12_dpkg_refuses_a_plugin_built_for_a_newer_abi_than_the_installed_shim() {
    plugin_needs_the_shims_abi("bookworm");
}

#[test]
fn on_debian_13_dpkg_refuses_a_plugin_built_for_a_newer_abi_than_the_installed_shim() {
    plugin_needs_the_shims_abi("trixie");
}

/// With a shim's package that speaks ABI 1.0.0 installed, dpkg refuses to set up a vendor's
/// plugin built against this checkout's `rustshim-plugin-api` (1.1.0 or later) and says which
/// ABI it needs and which the system has; once the shim that speaks it is installed, the plugin
/// installs and serves.
fn plugin_needs_the_shims_abi(suite: &str) {
    let (plugin, _) = vendor_debs();
    let name = field(plugin, "Package").unwrap();
    let (scratch, root) = fresh_copy(suite);
    let older = older_shim_package(scratch.path());
    let root = root.as_path();

    run(in_root(root, "dpkg").arg("-i").arg(&older)).ok();
    assert_eq!(dpkg_status(root, PACKAGE), "install ok installed");

    let out = run(in_root(root, "dpkg").arg("-i").arg(plugin)).failed();
    // dpkg names the provider with its architecture (`nbdkit-rustshim-plugin:amd64`).
    let provided = out.stderr.lines().map(str::trim).any(|line| {
        line.starts_with(&format!(
            "Version of rustshim-abi-1 on system, provided by {PACKAGE}"
        )) && line.ends_with(&format!(", is {OLDER_ABI}."))
    });
    assert!(
        out.stderr.contains(&format!(
            "{name} depends on rustshim-abi-1 (>= {API_VERSION}); however:"
        )) && provided,
        "{}",
        out.stderr
    );
    assert_ne!(dpkg_status(root, &name), "install ok installed");

    // The shim that speaks the plugin's ABI: now both are set up and the plugin serves.
    run(in_root(root, "dpkg").arg("-i").arg(deb()).arg(plugin)).ok();
    for package in [PACKAGE, &name] {
        assert_eq!(dpkg_status(root, package), "install ok installed");
    }
    assert_eq!(served_size(root, &[VENDOR_PLUGIN, "size=1M"]), "1048576");
}
