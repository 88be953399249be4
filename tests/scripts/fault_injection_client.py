# One client of the fault injection test (tests/faults.rs): random requests in its own 16 MiB,
# checked against a model of the data. The plugin decides which requests fail by a hash of the
# offset, and so does this script. Prints the counts, then up to five requests that misbehaved.
# Usage: fault_injection_client.py INDEX COUNT SOCKET
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
