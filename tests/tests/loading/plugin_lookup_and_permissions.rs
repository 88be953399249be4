//! Locating plugins by short name, and refusing plugin files that someone else could change.

use std::os::unix::fs::PermissionsExt;

use rustshim_tests::*;

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A directory laid out like `cargo xtask install`: the shim, and its plugins in `rustshim/`.
fn installed() -> TempDir {
    let dir = temp_dir("installed");
    std::fs::create_dir(dir.join("rustshim")).unwrap();
    std::fs::copy(shim(), dir.join("nbdkit-rustshim-plugin.so")).unwrap();
    std::fs::copy(plugin("null"), dir.join("rustshim/librustshim_null.so")).unwrap();
    dir
}

/// nbdkit with the shim installed in `dir` (see [`installed`]).
fn installed_nbdkit(dir: &TempDir) -> ServerBuilder {
    shim_nbdkit().shim(dir.join("nbdkit-rustshim-plugin.so"))
}

#[test]
fn a_short_name_finds_the_plugin_installed_beside_the_shim() {
    let dir = installed();
    let out =
        run_nbdkit(installed_nbdkit(&dir).args(["plugin=null", "size=2M", "--dump-plugin"])).ok();
    let want = format!(
        "rustshim_plugin_path={}",
        dir.join("rustshim/librustshim_null.so").display()
    );
    assert!(out.stdout.lines().any(|l| l == want), "{}", out.stdout);
}

#[test]
fn rustshim_plugin_path_is_searched_first() {
    let dir = installed();
    let extra = temp_dir("plugin-path");
    std::fs::copy(plugin("memory"), extra.join("libmydisk.so")).unwrap();
    let out = run_nbdkit(
        installed_nbdkit(&dir)
            .env(
                "RUSTSHIM_PLUGIN_PATH",
                format!("/nonexistent:{}", extra.path().display()),
            )
            .args(["plugin=mydisk", "size=1M", "--dump-plugin"]),
    )
    .ok();
    assert!(
        out.stdout.contains("rustshim_plugin_name=memory"),
        "{}",
        out.stdout
    );
}

#[test]
fn an_unknown_short_name_says_where_it_looked() {
    let dir = installed();
    let out = run_nbdkit(installed_nbdkit(&dir).args(["plugin=nosuch", "--run", "true"])).failed();
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("no plugin named 'nosuch'"))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(
        line.contains("librustshim_nosuch.so")
            && line.contains(&dir.join("rustshim").display().to_string()),
        "{line}"
    );
}

#[test]
fn a_group_writable_plugin_is_refused_unless_allowed() {
    let dir = temp_dir("perm-file");
    let so = dir.join("libnull.so");
    std::fs::copy(plugin("null"), &so).unwrap();
    chmod(dir.path(), 0o755);
    chmod(&so, 0o664);
    refused(
        &[format!("plugin={}", so.display()), "size=1M".into()],
        &[
            "libnull.so",
            "writable by group or others",
            "allow-insecure-plugin=true",
        ],
    );
    // The opt-out may follow plugin=: loading waits for the plugin's first parameter.
    let out = nbdinfo(
        &["--size"],
        &[
            format!("plugin={}", so.display()),
            "allow-insecure-plugin=true".into(),
            "size=1M".into(),
        ],
    )
    .ok();
    assert_eq!(out.stdout.trim(), "1048576");
}

#[test]
fn a_directory_others_can_write_is_refused_but_a_sticky_one_is_not() {
    let dir = temp_dir("perm-dir");
    chmod(dir.path(), 0o755);
    let open_dir = dir.join("open");
    std::fs::create_dir(&open_dir).unwrap();
    let so = open_dir.join("libnull.so");
    std::fs::copy(plugin("null"), &so).unwrap();
    chmod(&so, 0o644);

    chmod(&open_dir, 0o777);
    refused(
        &[format!("plugin={}", so.display())],
        &[&format!(
            "its directory '{}' is writable by group or others",
            open_dir.display()
        )],
    );

    chmod(&open_dir, 0o1777);
    nbdinfo(
        &["--size"],
        &[format!("plugin={}", so.display()), "size=1M".into()],
    )
    .ok();
}

/// A copy of the null plugin, mode 0644, in a fresh directory of mode 0755 (so `nobody` can
/// reach it), owned by `uid`.
fn plugin_owned_by(tag: &str, uid: u32) -> (TempDir, std::path::PathBuf) {
    let dir = temp_dir(tag);
    chmod(dir.path(), 0o755);
    let so = dir.join("libnull.so");
    std::fs::copy(plugin("null"), &so).unwrap();
    chmod(&so, 0o644);
    nix::unistd::chown(&so, Some(nix::unistd::Uid::from_raw(uid)), None).unwrap();
    (dir, so)
}

#[test]
fn a_plugin_owned_by_another_user_is_refused() {
    // nbdkit as root: a file of nobody's is someone else's.
    assert!(
        nix::unistd::geteuid().is_root(),
        "giving a file away needs root (the suite runs as root)"
    );
    let (_dir, so) = plugin_owned_by("perm-owner", NOBODY);
    refused(
        &[format!("plugin={}", so.display())],
        &[
            "libnull.so",
            &format!("belongs to another user (uid {NOBODY})"),
            "allow-insecure-plugin=true",
        ],
    );
}

#[test]
fn as_an_ordinary_user_a_plugin_owned_by_another_user_is_refused() {
    // nbdkit as nobody: a file of daemon's (uid 1) is refused, nobody's own and root's are not.
    let (dir, so) = plugin_owned_by("perm-owner-nobody", 1);
    let out = run_nbdkit(
        shim_nbdkit_as_nobody()
            .arg(format!("plugin={}", so.display()))
            .args(["--run", "true"]),
    );
    one_refusal(
        &out,
        &[
            &format!("plugin file '{}' refused", so.display()),
            &format!(
                "its file '{}' belongs to another user (uid 1)",
                so.display()
            ),
        ],
    );
    for owner in [NOBODY, 0] {
        nix::unistd::chown(&so, Some(nix::unistd::Uid::from_raw(owner)), None).unwrap();
        let out = run_nbdkit(
            shim_nbdkit_as_nobody()
                .arg(format!("plugin={}", so.display()))
                .arg("--dump-plugin"),
        )
        .ok();
        assert!(
            out.stdout.contains("rustshim_plugin_name=null"),
            "owned by uid {owner}:\n{}",
            out.stdout
        );
    }
    // A directory above it owned by another user is refused too.
    nix::unistd::chown(dir.path(), Some(nix::unistd::Uid::from_raw(1)), None).unwrap();
    let out = run_nbdkit(
        shim_nbdkit_as_nobody()
            .arg(format!("plugin={}", so.display()))
            .args(["--run", "true"]),
    );
    one_refusal(
        &out,
        &[&format!(
            "its directory '{}' belongs to another user (uid 1)",
            dir.path().display()
        )],
    );
}
