# A RAM disk for nbdkit's python plugin (written by `cargo xtask bench`).
import nbdkit

API_VERSION = 2
size = 0
disk = None
view = None


def config(key, value):
    global size
    if key == "size":
        size = nbdkit.parse_size(value)
    else:
        raise RuntimeError("unknown parameter " + key)


def config_complete():
    global disk, view
    disk = bytearray(size)
    view = memoryview(disk)


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def open(readonly):
    return 1


def get_size(h):
    return size


def can_multi_conn(h):
    return True


def pread(h, buf, offset, flags):
    buf[:] = view[offset:offset + len(buf)]


def pwrite(h, buf, offset, flags):
    view[offset:offset + len(buf)] = buf


def flush(h, flags):
    pass
