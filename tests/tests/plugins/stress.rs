//! A stress test, with verification: 64 parallel connections of fio writing and checking
//! (crc32c) through the shim, against the memory and file plugins, directly, through
//! `--filter=cow`, and while new builds roll in with `reload=watch`; and a real image copied in
//! with nbdcopy and compared with qemu-img. Zero verification errors allowed.

use rustshim_tests::*;

const MIB: u64 = 1 << 20;

/// fio with 64 jobs, each its own connection and its own 1 MiB, random 4K writes at depth 4,
/// then every block read back and checked. Returns fio's output; panics on any error.
fn fio_64_connections(uri: &str) -> String {
    let out = run(command("fio").args([
        "--name=load",
        "--ioengine=nbd",
        &format!("--uri={uri}"),
        "--rw=randwrite",
        "--bs=4k",
        "--size=1m",
        "--numjobs=64",
        "--offset_increment=1m",
        "--iodepth=4",
        "--verify=crc32c",
        "--verify_fatal=1",
        "--verify_state_save=0",
        "--group_reporting",
    ]));
    assert!(
        out.status.success(),
        "fio failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains("err= 0") && out.stdout.contains("jobs=64"),
        "{}",
        out.stdout
    );
    out.stdout
}

fn file_args(dir: &TempDir) -> Vec<String> {
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    vec![
        format!("plugin={}", plugin("file").display()),
        format!("file={}", disk.display()),
    ]
}

fn memory_args() -> Vec<String> {
    vec![
        format!("plugin={}", plugin("memory").display()),
        "size=64M".into(),
    ]
}

#[test]
fn memory_plugin_64_connections() {
    let server = serve(&[], &memory_args());
    fio_64_connections(&server.uri());
}

#[test]
fn file_plugin_64_connections() {
    let dir = temp_dir("load-file");
    let server = serve(&[], &file_args(&dir));
    fio_64_connections(&server.uri());
}

#[test]
fn memory_and_file_through_the_cow_filter() {
    let server = serve(&["--filter=cow"], &memory_args());
    fio_64_connections(&server.uri());
    let dir = temp_dir("load-cow");
    let server = serve(&["--filter=cow"], &file_args(&dir));
    fio_64_connections(&server.uri());
    // The cow filter keeps writes to itself: the file underneath is untouched.
    let disk = std::fs::read(dir.join("disk.img")).unwrap();
    assert!(
        disk.iter().all(|&b| b == 0),
        "writes went through the cow filter to the file"
    );
}

#[test]
fn memory_plugin_while_new_builds_roll_in() {
    let dir = temp_dir("load-reload");
    let watched = dir.join("libmemory.so");
    install_build(&plugin("memory"), &watched, Install::RenameOver);
    let builds = [
        rebuilt(&plugin("memory"), &dir, "a"),
        rebuilt(&plugin("memory"), &dir, "b"),
    ];
    let server = serve(
        &[],
        &[
            format!("plugin={}", watched.display()),
            "reload=watch".into(),
            "size=64M".into(),
        ],
    );
    let uri = server.uri();
    let fio = std::thread::spawn(move || {
        // Twice: the second run's connections land on whatever build is current by then, and
        // the disk (handed over from build to build) is the same.
        fio_64_connections(&uri);
        fio_64_connections(&uri);
    });
    for i in 0..6 {
        install_build(&builds[i % 2], &watched, Install::RenameOver);
        server
            .wait_for_log(&format!("generation {} from", i + 2), 1)
            .unwrap();
    }
    fio.join().expect("fio verified every block");
    assert!(server
        .log()
        .contains("took over state 'rustshim-memory-disk'"));
}

#[test]
fn a_real_image_copied_in_with_nbdcopy_compares_identical() {
    let dir = temp_dir("load-image");
    // A raw image with data, zero runs and a sparse tail, like a real disk.
    let image = dir.join("image.raw");
    let mut data = pattern(7, 48 * MIB as usize);
    for run in data.chunks_mut(3 * MIB as usize).step_by(2) {
        run[..MIB as usize].fill(0);
    }
    std::fs::write(&image, &data).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    let script = format!(
        "nbdcopy --connections=8 --requests=16 {img} \"$uri\" && qemu-img compare -f raw -F raw {img} \"$uri\"",
        img = image.display()
    );
    let out = nbdkit_run(&memory_args(), &script).ok();
    assert!(
        out.stdout.contains("Images are identical"),
        "{}",
        out.stdout
    );
}
