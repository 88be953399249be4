# One connection's read blocks (the test plugin sleeps in it); while it does, another
# connection does 200 requests, and the blocked read has still not returned when they are all
# done.
# Usage: blocked_read_and_others.py SOCKET BLOCKED_OFFSET TRACE
import os, sys, threading, time
import nbd

socket, blocked_offset, trace = sys.argv[1], int(sys.argv[2]), sys.argv[3]

blocked = nbd.NBD()
blocked.connect_unix(socket)
done = []
t = threading.Thread(target=lambda: done.append(blocked.pread(512, blocked_offset)), daemon=True)
t.start()
while 'blocking at' not in open(trace).read():
    time.sleep(0.01)
other = nbd.NBD()
other.connect_unix(socket)
for i in range(100):
    other.pwrite(bytes([i]) * 512, i * 512)
    assert other.pread(512, i * 512) == bytes([i]) * 512
print('others served', 'blocked read still waiting' if not done else 'blocked read returned')
other.shutdown()
os._exit(0)
