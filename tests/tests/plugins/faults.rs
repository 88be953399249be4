//! Faults injected into 1% of the requests of every data callback and 2% of `open`s (errors and
//! panics, via the test plugin's `fail_rate=`/`panic_rate=`), over 100,000 requests from four
//! parallel clients: exactly the injected requests fail, each with the errno it was given, every
//! other request returns correct data, the server keeps serving, and every handle is closed.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rustshim_tests::*;

const CLIENTS: usize = 4;
const REQUESTS_PER_CLIENT: usize = 25_000;

#[test]
fn exactly_the_injected_requests_fail_and_everything_else_is_correct() {
    let t = Trace::new("faults");
    let server = serve(
        &[],
        &[
            test_plugin(),
            format!("size={}", CLIENTS * (16 << 20)),
            t.arg(),
            "fail_rate=pread:1%:EPERM".into(),
            "panic_rate=pwrite:1/100".into(),
            "fail_rate=zero:0.01:ENOSPC".into(),
            "fail_rate=trim:1%:EIO".into(),
            "panic_rate=extents:1%".into(),
            "fail_rate=flush:1%:EIO".into(),
            // Opens are keyed by their number (0, 1, 2, ...), not an offset: about 104 opens
            // at 2% make the hash pick the opens numbered 8, 55, 56 and 62, whatever the
            // order the clients connect in (at 1% it picks none of the first 200).
            "fail_rate=open:2%:EPERM".into(),
        ],
    );
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            command("/usr/bin/python3")
                .arg(script("fault_injection_client.py"))
                .args([i.to_string(), REQUESTS_PER_CLIENT.to_string()])
                .arg(server.socket())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("python starts")
        })
        .collect();
    let (mut requests, mut injected, mut flush_failures, mut open_failures, mut connections) =
        (0, 0, 0, 0, 0);
    for client in clients {
        let out = client.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "client failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let n: Vec<u64> = stdout
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .map(|f| f.parse().unwrap())
            .collect();
        assert_eq!(n[5], 0, "requests that misbehaved:\n{stdout}");
        (requests, injected, flush_failures) =
            (requests + n[0], injected + n[1], flush_failures + n[2]);
        (open_failures, connections) = (open_failures + n[3], connections + n[4]);
    }
    let log = server.log();
    let count = |prefix: &str| t.count_prefixed(prefix) as u64;

    assert_eq!(requests, (CLIENTS * REQUESTS_PER_CLIENT) as u64);
    // About 1% of the offset-keyed requests (7 of 9 kinds) were injected, and the plugin agrees
    // on every one of them (its trace counts flush and open injections too).
    assert!(
        (400..1200).contains(&injected),
        "{injected} injected of {requests}"
    );
    assert_eq!(
        count("injected flush"),
        flush_failures,
        "failed flushes = injected flushes"
    );
    assert_eq!(
        count("injected open"),
        open_failures,
        "refused connections = injected opens"
    );
    let offset_keyed = ["pread", "pwrite", "zero", "trim", "extents"]
        .iter()
        .map(|c| count(&format!("injected {c}")))
        .sum::<u64>();
    assert_eq!(
        offset_keyed, injected,
        "the plugin injected exactly what the clients expected"
    );
    assert_eq!(open_failures, 4, "the opens numbered 8, 55, 56 and 62 fail");
    assert!(flush_failures > 0, "flush {flush_failures}");
    // Panics were reported with the callback's name, and none escaped.
    assert!(
        log.contains("test: panic in pwrite: test: injected panic in pwrite at"),
        "{log}"
    );
    assert!(log.contains("test: panic in extents: test: injected panic in extents at"));
    // Every handle the plugin opened was closed again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = t.lines();
        let opened = lines.iter().filter(|l| l.starts_with("open ")).count() as u64;
        let closed = lines.iter().filter(|l| *l == "close").count() as u64;
        if opened - open_failures == closed {
            assert_eq!(closed, connections);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "opened {opened}, refused {open_failures}, closed {closed}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.is_running());
    eprintln!("{requests} requests, {injected} injected by offset, {flush_failures} flushes and {open_failures} opens injected, {connections} connections");
}
