//! Faults injected into 1% of the requests of every data callback and 2% of `open`s (errors and
//! panics, via the test plugin's `fail_rate=`/`panic_rate=`), over 100,000 requests from four
//! parallel clients: exactly the injected requests fail, each with the errno it was given, every
//! other request returns correct data, the server keeps serving, and every handle is closed.

use std::process::Stdio;

use rustshim_tests::*;

const CLIENTS: usize = 4;
const REQUESTS_PER_CLIENT: usize = 25_000;

/// One client: random requests in its own 16 MiB, checked against a model of the data. The
/// plugin decides which requests fail by a hash of the offset, and so does this script.
const CLIENT: &str = r#"
import nbd, random, sys
M = (1 << 64) - 1
def fnv(s):
    h = 0xcbf29ce484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001b3) & M
    return h
def injected(callback, key, p=0.01):
    z = ((key ^ fnv(callback)) + 0x9e3779b97f4a7c15) & M
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
    z ^= z >> 31
    return float(z) < p * 18446744073709551616.0
index, count, sock = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
BS, REGION = 4096, 16 << 20
base = index * REGION
model = bytearray(REGION)
# What each callback's injected fault looks like at the client.
ERRNO = {'pread': 'EPERM', 'pwrite': 'EIO', 'zero': 'ENOSPC', 'trim': 'EIO', 'extents': 'EIO', 'flush': 'EIO'}
stats = {'requests': 0, 'injected': 0, 'flush_failures': 0, 'open_failures': 0, 'connections': 0}
bad = []
def connect():
    while True:
        h = nbd.NBD()
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
        try:
            h.connect_unix(sock)
            stats['connections'] += 1
            return h
        except nbd.Error:
            stats['open_failures'] += 1
rng = random.Random(index)
h = connect()
for i in range(count):
    if i and i % 1000 == 0:
        h.shutdown()
        h = connect()
    op = rng.choice(['pread', 'pread', 'pread', 'pwrite', 'pwrite', 'zero', 'trim', 'extents', 'flush'])
    offset = base + rng.randrange(REGION // BS) * BS
    at = offset - base
    data = rng.randbytes(BS) if op == 'pwrite' else None
    got, errno = None, None
    try:
        if op == 'pread': got = h.pread(BS, offset)
        elif op == 'pwrite': h.pwrite(data, offset)
        elif op in ('zero', 'trim'): getattr(h, op)(BS, offset)
        elif op == 'extents': h.block_status(BS, offset, lambda *a: 0)
        else: h.flush()
    except nbd.Error as e:
        errno = e.errno
    stats['requests'] += 1
    if op == 'flush':
        # No offset: the plugin keys flush faults by a counter, so only the count can be checked.
        if errno is not None:
            stats['flush_failures'] += 1
            if errno != ERRNO['flush']:
                bad.append('flush failed with %s' % errno)
        continue
    if injected(op, offset):
        stats['injected'] += 1
        if errno != ERRNO[op]:
            bad.append('%s at %d: expected %s, got %s' % (op, offset, ERRNO[op], errno))
        continue
    if errno is not None:
        bad.append('%s at %d failed with %s but was not injected' % (op, offset, errno))
    elif op == 'pread' and got != model[at:at + BS]:
        bad.append('pread at %d returned wrong data' % offset)
    elif op == 'pwrite':
        model[at:at + BS] = data
    elif op in ('zero', 'trim'):
        model[at:at + BS] = bytes(BS)
h.shutdown()
print(stats['requests'], stats['injected'], stats['flush_failures'], stats['open_failures'], stats['connections'], len(bad))
for b in bad[:5]:
    print(b)
"#;

#[test]
fn exactly_the_injected_requests_fail_and_everything_else_is_correct() {
    let dir = TempDir::new("faults");
    let trace = dir.join("trace");
    let server = BackgroundNbdkit::start(
        &[],
        &[
            format!("plugin={}", plugin("test").display()),
            format!("size={}", CLIENTS * (16 << 20)),
            format!("trace={}", trace.display()),
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
                .args([
                    "-c",
                    CLIENT,
                    &i.to_string(),
                    &REQUESTS_PER_CLIENT.to_string(),
                ])
                .arg(&server.socket)
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
    let log = server.log_text();
    let trace_text = std::fs::read_to_string(&trace).unwrap();
    let count = |prefix: &str| trace_text.lines().filter(|l| l.starts_with(prefix)).count() as u64;

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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let trace_text = std::fs::read_to_string(&trace).unwrap();
        let opened = trace_text
            .lines()
            .filter(|l| l.starts_with("open "))
            .count() as u64;
        let closed = trace_text.lines().filter(|l| *l == "close").count() as u64;
        if opened - open_failures == closed {
            assert_eq!(closed, connections);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "opened {opened}, refused {open_failures}, closed {closed}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut server = server;
    assert!(server.is_running());
    eprintln!("{requests} requests, {injected} injected by offset, {flush_failures} flushes and {open_failures} opens injected, {connections} connections");
}
