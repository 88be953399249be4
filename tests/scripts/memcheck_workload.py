# The memcheck tests' workload (tests/memcheck.rs): four connections of writes, reads, zeroes,
# trims, extents, a flush and a read the test plugin may be told to panic in. Prints ok.
# Usage: memcheck_workload.py SOCKET
import nbd, os, sys
sock = sys.argv[1]
for c in range(4):
    h = nbd.NBD()
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_unix(sock)
    for i in range(64):
        d = os.urandom(4096)
        h.pwrite(d, i * 4096)
        assert h.pread(4096, i * 4096) == d
    h.zero(65536, 0)
    h.trim(65536, 65536)
    h.block_status(1 << 20, 0, lambda *a: 0)
    h.flush()
    try:
        h.pread(512, 4096 * 1000)  # the test plugin panics here when asked to
    except nbd.Error:
        pass
    h.shutdown()
print('ok')
