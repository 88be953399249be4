# The churner of tests/reload_under_load.rs: new connections all the time over the second
# 64 MiB of the disk, until the file STOP exists; each write is checked by a read on another new
# connection, which may be served by another build. Prints the operations done, the number of
# failures and the first three.
# Usage: reload_churner.py STOP SOCKET
import nbd, os, random, sys
stop, sock = sys.argv[1], sys.argv[2]
ops, failures = 0, []
while not os.path.exists(stop):
    try:
        offset = (64 << 20) + random.randrange(0, 1024) * 65536
        data = os.urandom(65536)
        w = nbd.NBD(); w.connect_unix(sock); w.pwrite(data, offset); w.shutdown()
        r = nbd.NBD(); r.connect_unix(sock)
        if r.pread(65536, offset) != data:
            failures.append('corrupt at %d' % offset)
        r.shutdown()
        ops += 1
    except Exception as e:
        failures.append(str(e))
print(ops, len(failures), failures[:3])
