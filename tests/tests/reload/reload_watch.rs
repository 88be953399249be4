//! What the reload watch follows: a touched file costs nothing (no load, no mapping, flat
//! memory), a deleted and re-created directory (`cargo clean && cargo build`) is watched again,
//! and `plugin=` naming a symlink follows the link to its target, and to a new target when the
//! link is re-pointed.

use std::path::Path;
use std::time::Duration;

use rustshim_tests::*;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// How many distinct copies of a file named `name` are mapped into process `pid`.
fn mapped_copies(pid: u32, name: &str) -> usize {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut files: Vec<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|f| f.contains(name))
        .collect();
    files.sort();
    files.dedup();
    files.len()
}

fn serve_watched(plugin_arg: &Path, options: &[&str]) -> Server {
    serve(
        options,
        &[
            format!("plugin={}", plugin_arg.display()),
            "reload=watch".into(),
            "size=1M".into(),
        ],
    )
}

fn touch(path: &Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
}

#[test]
fn touching_the_file_loads_nothing() {
    let dir = temp_dir("touch");
    let watched = dir.join("libtouched.so");
    install_build(&plugin("null"), &watched, Install::RenameOver);
    let server = serve_watched(&watched, &["-v"]);
    let pid = server.pid();
    touch(&watched);
    server
        .wait_for_log("changed on disk but not in content", 1)
        .unwrap();
    let rss_before = rss_kib(pid);
    for n in 2..=40 {
        touch(&watched);
        server
            .wait_for_log("changed on disk but not in content", n)
            .unwrap();
    }
    let rss_after = rss_kib(pid);
    assert_eq!(
        mapped_copies(pid, "libtouched.so"),
        1,
        "touches mapped copies"
    );
    assert!(
        rss_after < rss_before + 4096,
        "RSS grew from {rss_before} KiB to {rss_after} KiB over 39 touches"
    );
    assert!(!server.log().contains("serves new connections"));
}

#[test]
fn a_deleted_and_recreated_directory_is_watched_again() {
    let dir = temp_dir("recreated");
    let build_dir = dir.join("target");
    std::fs::create_dir(&build_dir).unwrap();
    let watched = build_dir.join("libnull.so");
    install_build(&plugin("null"), &watched, Install::RenameOver);
    let v2 = rebuilt(&plugin("null"), &dir, "v2");
    let server = serve_watched(&watched, &[]);
    // `cargo clean && cargo build`.
    std::fs::remove_dir_all(&build_dir).unwrap();
    let lost = server.wait_for_log("watch", 1).unwrap();
    assert!(lost.contains(&build_dir.display().to_string()), "{lost}");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::create_dir(&build_dir).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    install_build(&v2, &watched, Install::RenameOver);
    let line = server.wait_for_log("generation 2 from", 1).unwrap();
    assert!(line.contains("serves new connections"), "{line}");
    server.wait_for_log("watching", 1).unwrap();
    // And again: the watch keeps working after being re-armed.
    std::fs::remove_dir_all(&build_dir).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::create_dir(&build_dir).unwrap();
    install_build(&plugin("null"), &watched, Install::RenameOver);
    server.wait_for_log("generation 3 from", 1).unwrap();
}

#[test]
fn a_symlink_is_followed_to_its_target_and_to_a_new_target() {
    let dir = temp_dir("symlink");
    let builds = dir.join("builds");
    std::fs::create_dir(&builds).unwrap();
    let target = builds.join("libnull.so");
    install_build(&plugin("null"), &target, Install::RenameOver);
    let link = dir.join("libcurrent.so");
    std::os::unix::fs::symlink("builds/libnull.so", &link).unwrap();
    let server = serve_watched(&link, &[]);
    // The target is rebuilt: the link's directory sees nothing of it.
    install_build(
        &rebuilt(&plugin("null"), &dir, "v2"),
        &target,
        Install::RenameOver,
    );
    server.wait_for_log("generation 2 from", 1).unwrap();
    // The link is re-pointed (`ln -sfn`), then the new target is rebuilt.
    let other = builds.join("libother.so");
    install_build(
        &rebuilt(&plugin("null"), &dir, "v3"),
        &other,
        Install::RenameOver,
    );
    let tmp = dir.join("link.tmp");
    std::os::unix::fs::symlink("builds/libother.so", &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    server.wait_for_log("generation 3 from", 1).unwrap();
    install_build(
        &rebuilt(&plugin("null"), &dir, "v4"),
        &other,
        Install::CopyInPlace,
    );
    server.wait_for_log("generation 4 from", 1).unwrap();
    // The old target is no longer followed.
    install_build(
        &rebuilt(&plugin("null"), &dir, "v5"),
        &target,
        Install::RenameOver,
    );
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        !server.log().contains("generation 5 from"),
        "{}",
        server.log()
    );
}
