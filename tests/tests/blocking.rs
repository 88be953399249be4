//! A plugin that blocks in a callback does not stop other connections (parallel thread model),
//! and a client that goes away in the middle of a request leaves nothing behind.

use rustshim_tests::*;

const BLOCKED_OFFSET: u64 = 1 << 20;

fn server(trace: &std::path::Path) -> BackgroundNbdkit {
    BackgroundNbdkit::start(
        &[],
        &[
            format!("plugin={}", plugin("test").display()),
            "size=4M".into(),
            format!("trace={}", trace.display()),
            format!("block_at={BLOCKED_OFFSET}:60s"),
        ],
    )
}

fn trace_count(trace: &std::path::Path, line: &str) -> usize {
    std::fs::read_to_string(trace)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(line))
        .count()
}

#[test]
fn a_blocked_request_does_not_stop_other_connections() {
    let dir = TempDir::new("blocking");
    let trace = dir.join("trace");
    let server = server(&trace);
    // One connection's read blocks for a minute; while it does, another connection does 200
    // requests, and the blocked read has still not returned when they are all done.
    let script = format!(
        r#"
import threading
blocked = nbd.NBD()
blocked.connect_unix(SOCKET)
done = []
t = threading.Thread(target=lambda: done.append(blocked.pread(512, {BLOCKED_OFFSET})), daemon=True)
t.start()
while 'blocking at' not in open({trace:?}).read():
    time.sleep(0.01)
other = nbd.NBD()
other.connect_unix(SOCKET)
for i in range(100):
    other.pwrite(bytes([i]) * 512, i * 512)
    assert other.pread(512, i * 512) == bytes([i]) * 512
print('others served', 'blocked read still waiting' if not done else 'blocked read returned')
other.shutdown()
os._exit(0)
"#,
        trace = trace.display().to_string(),
    );
    let out = server.python(&script).ok();
    assert_eq!(
        out.stdout.trim(),
        "others served blocked read still waiting"
    );
}

#[test]
fn a_client_that_disconnects_mid_request_leaves_nothing_behind() {
    let dir = TempDir::new("disconnect");
    let trace = dir.join("trace");
    let mut server = server(&trace);
    let fds_idle = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count();
    // The client sends a read that blocks, then dies without a word.
    let script = format!(
        r#"
c = nbd.NBD()
c.connect_unix(SOCKET)
c.aio_pread(nbd.Buffer(512), {BLOCKED_OFFSET})
while 'blocking at' not in open({trace:?}).read():
    time.sleep(0.01)
os._exit(0)
"#,
        trace = trace.display().to_string(),
    );
    server.python(&script).ok();
    // nbdkit notices the dead socket, wakes the sleeping request (nbdkit_nanosleep returns
    // early when the client is gone), and closes the handle.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while trace_count(&trace, "close") < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the handle was never closed:\n{}",
            std::fs::read_to_string(&trace).unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(trace_count(&trace, "open "), 1);
    assert_eq!(
        trace_count(&trace, "unblocked at"),
        0,
        "the sleep was cut short, not completed"
    );
    while std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count()
        > fds_idle
    {
        assert!(
            std::time::Instant::now() < deadline,
            "descriptors left open"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(server.is_running());
    let out = server
        .python("h = nbd.NBD()\nh.connect_unix(SOCKET)\nprint(h.pread(4, 0).hex())")
        .ok();
    assert_eq!(out.stdout.trim(), "00000000");
}
