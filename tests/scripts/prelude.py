# What every Python client of the tests starts with: the Rust helpers put it before their
# programs (tests/src/clients.rs), scripts in this directory import it.
import errno, json, os, signal, sys, time
import nbd

def attempt(f, *args, **kw):
    """The call's result, 'ok' for None, or the errno name of the nbd.Error it raised."""
    try:
        r = f(*args, **kw)
        return "ok" if r is None else r
    except nbd.Error as e:
        return e.errno or e.string
