# tests/reload.rs: one connection reads in a loop on its own thread while the watched plugin
# file is replaced by v2; after the reload line it must still see v1 (0x11), a new connection
# must see v2 (0x22), and no read may fail. Prints the reads done, the number of failures and
# the first three.
# Usage: reload_keeps_open_connections.py SOCKET V2 TMP PLUGIN LOG
import os, shutil, sys, threading, time
import nbd

socket, v2, tmp, plugin, log = sys.argv[1:6]

h1 = nbd.NBD()
h1.connect_unix(socket)
assert h1.pread(4, 0) == b'\x11' * 4
reads, bad, stop = [0], [], [False]
def loop():
    while not stop[0]:
        try:
            if h1.pread(65536, 0) != b'\x11' * 65536:
                bad.append('wrong data')
            reads[0] += 1
        except Exception as e:
            bad.append(str(e))
t = threading.Thread(target=loop)
t.start()
while reads[0] < 50:
    time.sleep(0.001)
shutil.copy(v2, tmp)
os.rename(tmp, plugin)
while 'generation 2 from' not in open(log).read():
    time.sleep(0.01)
h2 = nbd.NBD()
h2.connect_unix(socket)
assert h2.pread(4, 0) == b'\x22' * 4, h2.pread(4, 0)
assert h1.pread(4, 0) == b'\x11' * 4
after = reads[0]
while reads[0] < after + 50:
    time.sleep(0.001)
stop[0] = True
t.join()
print(reads[0], len(bad), bad[:3])
