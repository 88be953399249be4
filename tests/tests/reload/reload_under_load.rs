//! Twenty reloads while clients hammer the server: fio with crc32c verification on long-lived
//! connections (which stay on the first build), and a client that keeps opening new connections
//! (which land on whichever build is current), writing on one and verifying on another. Nothing
//! may fail, nothing may be corrupted, and afterwards no file descriptor is left open and memory
//! stays bounded.

use std::process::Stdio;

use rustshim_tests::*;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

const MIB: u64 = 1 << 20;

#[test]
fn twenty_reloads_under_parallel_load_lose_no_request_and_no_data() {
    let dir = temp_dir("reload-load");
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(128 * MIB)
        .unwrap();
    let watched = dir.join("libfile.so");
    install_build(&plugin("file"), &watched, Install::RenameOver);
    let builds = [
        rebuilt(&plugin("file"), &dir, "a"),
        rebuilt(&plugin("file"), &dir, "b"),
    ];

    let server = serve(
        &[],
        &[
            format!("plugin={}", watched.display()),
            "reload=watch".into(),
            format!("file={}", disk.display()),
        ],
    );
    let pid = server.pid();
    let fds_idle = open_fds(pid);

    // fio, run again and again until the reloads are done, so that its connections land on
    // one build after another: 4 jobs, each its own 16 MiB of the first 64 MiB, random 4K writes
    // at depth 8, then read back and checked (crc32c).
    let fio_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fio = {
        let (uri, stop) = (server.uri(), fio_stop.clone());
        std::thread::spawn(move || {
            let mut runs = Vec::new();
            while runs.is_empty() || !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = command("fio")
                    .args([
                        "--name=verify",
                        "--ioengine=nbd",
                        &format!("--uri={uri}"),
                        "--rw=randwrite",
                        "--bs=4k",
                        "--size=16m",
                        "--numjobs=4",
                        "--offset_increment=16m",
                        "--iodepth=8",
                        "--verify=crc32c",
                        "--verify_fatal=1",
                        "--group_reporting",
                        "--verify_state_save=0",
                    ])
                    .output()
                    .expect("fio runs");
                runs.push(out);
            }
            runs
        })
    };

    // The churner: new connections all the time over the second 64 MiB; each write is checked
    // by a read on another new connection, which may be served by another build.
    let stop = dir.join("stop");
    let churn = command("/usr/bin/python3")
        .arg(script("reload_churner.py"))
        .arg(&stop)
        .arg(server.socket())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");

    // A reload takes a few milliseconds now that the shim reads a build the moment it lands:
    // one every 250 ms, so the twenty span several fio runs (each a few seconds) and the
    // churner's many connections, as they did when each reload waited out a 150 ms debounce.
    for i in 0..20 {
        let next = std::time::Instant::now() + std::time::Duration::from_millis(250);
        install_build(&builds[i % 2], &watched, Install::RenameOver);
        server
            .wait_for_log(&format!("generation {} from", i + 2), 1)
            .unwrap();
        std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
    }
    let rss_after_reloads = rss_kib(pid);

    std::fs::write(&stop, b"").unwrap();
    let churn = churn.wait_with_output().unwrap();
    let churn_out = String::from_utf8_lossy(&churn.stdout);
    assert!(
        churn.status.success(),
        "churner failed: {churn_out}\n{}",
        String::from_utf8_lossy(&churn.stderr)
    );
    let fields: Vec<&str> = churn_out.split_whitespace().collect();
    assert!(
        fields[0].parse::<u32>().unwrap() > 20,
        "the churner kept working: {churn_out}"
    );
    assert_eq!(fields[1], "0", "failed or corrupt requests: {churn_out}");

    fio_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let fio_runs = fio.join().unwrap();
    for out in &fio_runs {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "fio failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("err= 0"), "fio reported errors:\n{text}");
    }
    assert!(fio_runs.len() >= 2, "fio ran throughout the reloads");

    // All clients are gone: the file plugin's per-connection descriptors must all be closed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while open_fds(pid) > fds_idle {
        assert!(
            std::time::Instant::now() < deadline,
            "{} fds open, {fds_idle} when idle",
            open_fds(pid)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Each generation keeps its code mapped (plugins are never unloaded), a bounded cost.
    assert!(
        rss_after_reloads < 400 * 1024,
        "RSS {rss_after_reloads} KiB after 20 reloads"
    );
    let log = server.log();
    assert!(!log.contains("refused"), "{log}");
    eprintln!(
        "churner: {churn_out}fio runs: {}\nRSS after 20 reloads: {rss_after_reloads} KiB",
        fio_runs.len()
    );
}
