//! A plugin that blocks in a callback does not stop other connections (parallel thread model),
//! and a client that goes away in the middle of a request leaves nothing behind.

use std::time::{Duration, Instant};

use rustshim_tests::*;

const BLOCKED_OFFSET: u64 = 1 << 20;

fn server(t: &Trace) -> Server {
    serve(
        &[],
        &[
            test_plugin(),
            "size=4M".into(),
            t.arg(),
            format!("block_at={BLOCKED_OFFSET}:60s"),
        ],
    )
}

#[test]
fn a_blocked_request_does_not_stop_other_connections() {
    let t = Trace::new("blocking");
    let server = server(&t);
    let out = python_script(
        "blocked_read_and_others.py",
        &[
            server.socket().display().to_string(),
            BLOCKED_OFFSET.to_string(),
            t.path().display().to_string(),
        ],
    )
    .ok();
    assert_eq!(
        out.stdout.trim(),
        "others served blocked read still waiting"
    );
}

#[test]
fn a_client_that_disconnects_mid_request_leaves_nothing_behind() {
    let t = Trace::new("disconnect");
    let server = server(&t);
    let fds_idle = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count();
    // The client sends a read that blocks, then dies without a word.
    let script = format!(
        r#"
c = nbd.NBD()
c.connect_unix(SOCKET)
c.aio_pread(nbd.Buffer(512), {BLOCKED_OFFSET})
while 'blocking at' not in open({trace}).read():
    time.sleep(0.01)
os._exit(0)
"#,
        trace = py(&t.path()),
    );
    server.client(&script).ok();
    // nbdkit notices the dead socket, wakes the sleeping request (nbdkit_nanosleep returns
    // early when the client is gone), and closes the handle.
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.count_prefixed("close") < 1 {
        assert!(
            Instant::now() < deadline,
            "the handle was never closed:\n{}",
            t.lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(t.count_prefixed("open "), 1);
    assert_eq!(
        t.count_prefixed("unblocked at"),
        0,
        "the sleep was cut short, not completed"
    );
    while std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count()
        > fds_idle
    {
        assert!(Instant::now() < deadline, "descriptors left open");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.is_running());
    let out = server
        .client("h.connect_unix(SOCKET)\nprint(h.pread(4, 0).hex())")
        .ok();
    assert_eq!(out.stdout.trim(), "00000000");
}
