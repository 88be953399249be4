# tests/defaults.rs: every kind of request, with libnbd's client-side checks off so the server
# answers even those it did not advertise, to the nbdkit that libnbd starts with the command
# line given (over stdio). Prints each request's name and result: its data's digest, 'ok', or
# the errno it failed with.
# Usage: every_request.py NBDKIT ARGS...
import sys
import nbd
from prelude import attempt

argv = sys.argv[1:]
h = nbd.NBD()
h.set_strict_mode(0)
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_command(argv)
def extents(count, offset, flags=0):
    ents = []
    h.block_status(count, offset, lambda ctx, off, e, err: ents.append(list(e)), flags)
    return ents
def digest(b):
    return __import__("hashlib").sha256(b).hexdigest()[:16]
results = [
    ("pread", attempt(lambda: digest(h.pread(65536, 4096)))),
    ("pwrite", attempt(h.pwrite, b"\xab" * 8192, 8192)),
    ("pwrite-fua", attempt(h.pwrite, b"\xcd" * 512, 0, nbd.CMD_FLAG_FUA)),
    ("pread-back", attempt(lambda: digest(h.pread(16384, 0)))),
    ("flush", attempt(h.flush)),
    ("trim", attempt(h.trim, 4096, 8192)),
    ("zero", attempt(h.zero, 4096, 12288)),
    ("zero-no-hole", attempt(h.zero, 512, 512, nbd.CMD_FLAG_NO_HOLE)),
    # (Only when advertised: nbdkit 1.32.5 aborts on an assertion otherwise.)
    ("zero-fast", attempt(h.zero, 4096, 12288, nbd.CMD_FLAG_FAST_ZERO)
        if h.can_fast_zero() else "not advertised"),
    ("zero-fua", attempt(h.zero, 4096, 12288, nbd.CMD_FLAG_FUA)),
    ("pread-zeroed", attempt(lambda: digest(h.pread(16384, 0)))),
    ("cache", attempt(h.cache, 4096, 0)),
    ("extents", attempt(extents, 65536, 0)),
    ("extents-req-one", attempt(extents, 65536, 0, nbd.CMD_FLAG_REQ_ONE)),
    ("past-the-end", attempt(h.pread, 512, h.get_size())),
]
for name, r in results:
    print(name, r)
h.shutdown()
