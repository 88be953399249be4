//! Hot reload of a Rust filter (`filter-reload=watch`): new builds land while fio writes and
//! verifies (crc32c) through the filter; new connections get the new build, open ones keep
//! theirs, and no request fails or is corrupted. The filter changes the data both ways (the
//! test filter's `tf-xor`), so a build that lost its configuration would corrupt it.

use rustshim_tests::filters::*;
use rustshim_tests::*;

fn fio(uri: &str) -> std::process::Output {
    command("fio")
        .args([
            "--name=verify",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            "--rw=randwrite",
            "--bs=4k",
            "--size=8m",
            "--numjobs=2",
            "--offset_increment=8m",
            "--iodepth=8",
            "--verify=crc32c",
            "--verify_fatal=1",
            "--group_reporting",
            "--verify_state_save=0",
        ])
        .output()
        .expect("fio runs")
}

#[test]
fn reloads_of_a_filter_under_fio_verify_lose_nothing() {
    let dir = temp_dir("filter-reload");
    let watched = dir.join("libwatched.so");
    install_build(&filter("test"), &watched, Install::RenameOver);
    let builds = [
        rebuilt(&filter("test"), &dir, "a"),
        rebuilt(&filter("test"), &dir, "b"),
    ];
    let args = nbdkit_words(&[
        rust_filter(),
        "memory".into(),
        "64M".into(),
        format!("filter={}", watched.display()),
        "filter-reload=watch".into(),
        "tf-xor=7".into(),
    ]);
    let server = serve_words(&args);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let runner = {
        let (uri, stop) = (server.uri(), stop.clone());
        std::thread::spawn(move || {
            let mut runs = Vec::new();
            while runs.is_empty() || !stop.load(std::sync::atomic::Ordering::Relaxed) {
                runs.push(fio(&uri));
            }
            runs
        })
    };
    // A long-lived connection opened before the reloads: it keeps generation 1.
    let probe = "h = nbd.NBD()\nh.connect_uri(URI)\nh.pwrite(b'before' * 100, 32 << 20)\nimport time\nopen(os.environ['READY'], 'w').close()\nwhile not os.path.exists(os.environ['GO']):\n    time.sleep(0.05)\nprint(h.pread(600, 32 << 20) == b'before' * 100)";
    let (ready, go) = (dir.join("ready"), dir.join("go"));
    let old = {
        let program = format!("import nbd, os, sys\nURI = {:?}\n{probe}", server.uri());
        command("/usr/bin/python3")
            .env("READY", &ready)
            .env("GO", &go)
            .arg("-c")
            .arg(program)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    while !ready.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    for i in 0..10 {
        install_build(&builds[i % 2], &watched, Install::RenameOver);
        let line = server
            .wait_for_log(&format!("generation {} from", i + 2), 1)
            .unwrap();
        assert!(line.contains("filter 'test' version"), "{line}");
    }
    std::fs::write(&go, b"").unwrap();
    let old = old.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&old.stdout).trim(),
        "True",
        "the old connection kept its build"
    );

    // A new connection is served by the newest build, with the configuration replayed.
    let out = server
        .client(
            "h.connect_uri(URI)\nh.pwrite(b'after', 40 << 20)\nprint(bytes(h.pread(5, 40 << 20)))",
        )
        .ok();
    assert_eq!(out.stdout.trim(), "b'after'");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = runner.join().unwrap();
    for out in &runs {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "fio failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("err= 0"), "fio reported errors:\n{text}");
    }
    let log = server.log();
    assert!(!log.contains("refused"), "{log}");
    assert!(!log.contains("error"), "{log}");
}

#[test]
fn a_broken_build_of_a_filter_is_refused_and_the_old_one_keeps_serving() {
    let dir = temp_dir("filter-reload-bad");
    let watched = dir.join("libwatched.so");
    install_build(&filter("passthrough"), &watched, Install::RenameOver);
    let args = nbdkit_words(&[
        rust_filter(),
        "memory".into(),
        "1M".into(),
        format!("filter={}", watched.display()),
        "filter-reload=watch".into(),
    ]);
    let server = serve_words(&args);
    // A plugin where the filter was: refused, generation 1 keeps serving.
    install_build(&plugin("null"), &watched, Install::RenameOver);
    let line = server.wait_for_log("reload of", 1).unwrap();
    assert!(
        line.contains("refused") && line.contains("is a rustshim plugin, not a filter"),
        "{line}"
    );
    let out = server
        .client("h.connect_uri(URI)\nh.pwrite(b'x', 0)\nprint(bytes(h.pread(1, 0)))")
        .ok();
    assert_eq!(out.stdout.trim(), "b'x'");
    // The next good build is taken.
    install_build(
        &rebuilt(&filter("passthrough"), &dir, "c"),
        &watched,
        Install::RenameOver,
    );
    server.wait_for_log("generation 2 from", 1).unwrap();
}

/// Serves build 1 of the `generation` filter (`filters/test/examples/`, whose reads start with
/// `build=B mark=M reads=N`) with `filter-reload=watch` and `gen-mark=first-load`. Connection A
/// reads `reads_before` times, build 2 lands, and once the shim has loaded it A reads again,
/// connection B reads, and A once more. Returns each read's first line (`A1`…, `B1`), the
/// shim's reload line, and nbdkit's exit status and log once stopped.
fn swap_generations(reads_before: usize) -> (Vec<String>, String, rustshim_harness::Stopped) {
    let dir = temp_dir("filter-generations");
    let watched = dir.join("libgeneration.so");
    install_build(
        &filter_example("filter_generation_1"),
        &watched,
        Install::RenameOver,
    );
    let args = nbdkit_words(&[
        rust_filter(),
        "memory".into(),
        "1M".into(),
        format!("filter={}", watched.display()),
        "filter-reload=watch".into(),
        "gen-mark=first-load".into(),
    ]);
    let server = serve_words(&args);
    let script = format!(
        r#"
import shutil
def first_line(c):
    return bytes(c.pread(64, 0)).split(b'\n')[0].decode()
a = nbd.NBD()
a.connect_uri(URI)
for i in range({reads_before}):
    print('A%d' % (i + 1), first_line(a))
shutil.copy({v2:?}, {watched:?} + '.tmp')
os.rename({watched:?} + '.tmp', {watched:?})
while 'generation 2 from' not in open({log:?}).read():
    time.sleep(0.01)
print('A%d' % ({reads_before} + 1), first_line(a))
b = nbd.NBD()
b.connect_uri(URI)
print('B1', first_line(b))
print('A%d' % ({reads_before} + 2), first_line(a))
b.shutdown()
a.shutdown()
"#,
        v2 = filter_example("filter_generation_2").display().to_string(),
        watched = watched.display().to_string(),
        log = server.log_path().display().to_string(),
    );
    let out = server.client(&script).ok();
    let line = server.wait_for_log("generation 2 from", 1).unwrap();
    let stopped = server.stop().unwrap();
    assert!(
        stopped.status.success(),
        "nbdkit exited with {}:\n{}",
        stopped.status,
        stopped.log
    );
    let lines = out.stdout.lines().map(str::to_owned).collect();
    (lines, line, stopped)
}

#[test]
fn a_new_build_of_a_filter_gets_the_same_keys_and_open_connections_keep_theirs() {
    let (lines, line, _) = swap_generations(1);
    let build_and_mark = |l: &String| -> String {
        let (name, text) = l.split_once(' ').unwrap();
        let text = text.rsplit_once(" reads=").unwrap().0;
        format!("{name} {text}")
    };
    assert_eq!(
        lines.iter().map(build_and_mark).collect::<Vec<_>>(),
        [
            "A1 build=1 mark=first-load",
            // A, opened before the reload, keeps build 1.
            "A2 build=1 mark=first-load",
            // B, opened after, gets build 2, configured with the keys of the first load.
            "B1 build=2 mark=first-load",
            "A3 build=1 mark=first-load",
        ],
        "{lines:?}\n{line}"
    );
    assert!(
        line.contains("filter 'generation' version 1 -> 2"),
        "{line}"
    );
}

#[test]
fn state_a_filter_hands_over_reaches_its_new_build() {
    let (lines, line, _) = swap_generations(3);
    assert_eq!(
        lines,
        [
            "A1 build=1 mark=first-load reads=1",
            "A2 build=1 mark=first-load reads=2",
            "A3 build=1 mark=first-load reads=3",
            "A4 build=1 mark=first-load reads=4",
            // Build 2 took over the count of build 1 when it was loaded (3), then served one.
            "B1 build=2 mark=first-load reads=4",
            "A5 build=1 mark=first-load reads=5",
        ],
        "{line}"
    );
    assert!(
        line.contains("took over state 'generation-reads'"),
        "{line}"
    );
}
