# tests/reload.rs: the memory plugin's disk across two reloads (v2, then v3, renamed over the
# watched PLUGIN): data written before a reload is kept, old and new connections see each
# other's writes, and a third build still has it all. Prints ok.
# Usage: reload_memory_handover.py SOCKET LOG V2 V3 PLUGIN
import os, shutil, sys, time
import nbd

socket, log, v2, v3, plugin = sys.argv[1:6]

def wait_for(text):
    while text not in open(log).read():
        time.sleep(0.01)
data = os.urandom(1 << 20)
h1 = nbd.NBD()
h1.connect_unix(socket)
h1.pwrite(data, 4 << 20)
shutil.copy(v2, plugin + '.tmp'); os.rename(plugin + '.tmp', plugin)
wait_for('generation 2 from')
h2 = nbd.NBD()
h2.connect_unix(socket)
assert h2.pread(1 << 20, 4 << 20) == data, 'data written before the reload is kept'
# The old connection still writes to the same disk the new build serves.
h1.pwrite(b'old' * 1000, 0)
assert h2.pread(3000, 0) == b'old' * 1000, 'a write on the old build is seen by the new one'
h2.pwrite(b'new' * 1000, 8192)
assert h1.pread(3000, 8192) == b'new' * 1000, 'and the other way round'
h1.shutdown()
shutil.copy(v3, plugin + '.tmp'); os.rename(plugin + '.tmp', plugin)
wait_for('generation 3 from')
h3 = nbd.NBD()
h3.connect_unix(socket)
assert h3.pread(1 << 20, 4 << 20) == data and h3.pread(3000, 0) == b'old' * 1000
print('ok')
