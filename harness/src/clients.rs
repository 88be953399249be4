//! The clients a [`Server`] comes with: Python scripts with libnbd, reads, writes and
//! `nbdinfo`, each under the server's time limit, on the default export or on a named one
//! ([`Export`]).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{HarnessError, Result};
use crate::process;
use crate::server::Server;

/// The largest request the clients here send at once.
const CHUNK: usize = 4 << 20;

/// Runs the script file `sys.argv[1]` with `h` connected to the server's export `EXPORT`, as
/// `nbdsh` would; the script sees its own path as `sys.argv[0]` and its arguments after it.
const PYTHON_PRELUDE: &str = "\
import os, sys
import nbd
sys.argv = sys.argv[1:]
URI = os.environ['RUSTSHIM_HARNESS_URI']
SOCKET = os.environ['RUSTSHIM_HARNESS_SOCKET']
EXPORT = os.environ['RUSTSHIM_HARNESS_EXPORT']
h = nbd.NBD()
h.set_export_name(EXPORT)
h.connect_unix(SOCKET)
exec(compile(open(sys.argv[0]).read(), sys.argv[0], 'exec'))
try:
    h.shutdown()
except Exception:
    pass
";

impl Server {
    /// The export called `name` (what a client asks for with `nbd+unix:///NAME?socket=…` or
    /// libnbd's `set_export_name`), with the same clients as the server's default export:
    /// for plugins that serve several exports (`list_exports`, `export_name()`).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), rustshim_harness::HarnessError> {
    /// # let server = rustshim_harness::Server::start("x.so", &[])?;
    /// let disk2 = server.export("disk2");
    /// println!("{}", disk2.uri()); // nbd+unix:///disk2?socket=/tmp/…/nbd.sock
    /// disk2.write(0, b"two")?;
    /// assert_eq!(disk2.read(0, 3)?, b"two");
    /// let out = disk2.python("print(h.get_export_name())")?;
    /// assert_eq!(out.trim(), "disk2");
    /// # Ok(()) }
    /// ```
    pub fn export(&self, name: &str) -> Export<'_> {
        Export {
            server: self,
            name: name.to_owned(),
        }
    }

    /// The NBD URI of the default export: `nbd+unix:///?socket=SOCKET`, for any NBD client.
    pub fn uri(&self) -> String {
        self.export("").uri()
    }

    /// Runs a Python 3 script with libnbd's `nbd` module (`/usr/bin/python3`, Debian's
    /// python3-libnbd) and returns what it printed. The script starts with `h`, an `nbd.NBD()`
    /// handle connected to the server's default export, and `URI`, `SOCKET` and `EXPORT`
    /// defined, as in `nbdsh`; a common indentation is removed, so it can be an indented raw
    /// string. An exception fails the call with its traceback. For a named export:
    /// [`export`](Self::export).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), rustshim_harness::HarnessError> {
    /// # let server = rustshim_harness::Server::start("x.so", &[])?;
    /// let out = server.python(
    ///     r#"
    ///     h.pwrite(b"\x01" * 512, 0)
    ///     print(h.can_flush(), h.pread(4, 0))
    ///     "#,
    /// )?;
    /// assert_eq!(out.trim(), r"True b'\x01\x01\x01\x01'");
    /// # Ok(()) }
    /// ```
    pub fn python(&self, script: &str) -> Result<String> {
        self.export("").python(script)
    }

    /// Like [`python`](Self::python), with `args` in `sys.argv[1:]`, `stdin` as its input, and
    /// its output as bytes.
    pub fn python_bytes(&self, script: &str, args: &[&str], stdin: &[u8]) -> Result<Vec<u8>> {
        self.export("").python_bytes(script, args, stdin)
    }

    /// Reads `len` bytes at `offset` of the default export.
    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.export("").read(offset, len)
    }

    /// Writes `data` at `offset` of the default export (each request returns once the
    /// plugin's `pwrite` has; no flush is sent).
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.export("").write(offset, data)
    }

    /// The size of the default export in bytes (`nbdinfo --size`).
    pub fn size(&self) -> Result<u64> {
        self.export("").size()
    }

    /// Runs `nbdinfo OPTIONS URI` (libnbd-bin) on the default export and returns what it
    /// printed: try `--json`, `--map`, `--can write`, `--is rotational`, `--list` (every
    /// export).
    pub fn nbdinfo(&self, options: &[&str]) -> Result<String> {
        self.export("").nbdinfo(options)
    }

    /// Runs a client to completion under the time limit; a missing program is `NotFound`.
    fn run_client(
        &self,
        cmd: &mut Command,
        stdin: &[u8],
        program: &str,
    ) -> Result<process::Finished> {
        match process::run_with_input(cmd, stdin, self.timeout) {
            Err(HarnessError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let package = if program == "nbdinfo" {
                    "libnbd-bin"
                } else {
                    "python3-libnbd"
                };
                Err(HarnessError::NotFound(format!(
                    "cannot run {program}: {source} (Debian: apt-get install {package})"
                )))
            }
            other => other,
        }
    }

    /// The client's stdout if it succeeded, else an error with its stderr and nbdkit's log.
    fn succeeded(
        &self,
        cmd: &Command,
        script: &str,
        finished: process::Finished,
    ) -> Result<Vec<u8>> {
        let status = match finished.status {
            Some(status) if status.success() => return Ok(finished.stdout),
            Some(status) => status.to_string(),
            None => format!("timed out after {:?}", self.timeout),
        };
        Err(HarnessError::Client {
            command: process::describe(cmd),
            script: script.to_string(),
            status,
            stderr: String::from_utf8_lossy(&finished.stderr).into_owned(),
            log: self.log(),
        })
    }
}

/// One export of a [`Server`], by name: [`Server::export`]. Its clients are the server's
/// (the same time limit, and nbdkit's log in their errors).
#[derive(Clone)]
pub struct Export<'a> {
    server: &'a Server,
    name: String,
}

impl std::fmt::Debug for Export<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("name", &self.name)
            .field("uri", &self.uri())
            .finish()
    }
}

impl Export<'_> {
    /// The export's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its NBD URI: `nbd+unix:///NAME?socket=SOCKET`, the name percent-encoded.
    pub fn uri(&self) -> String {
        format!(
            "nbd+unix:///{}?socket={}",
            uri_encode(self.name.as_bytes()),
            uri_encode(self.server.socket().as_os_str().as_encoded_bytes())
        )
    }

    /// [`Server::python`] with `h` connected to this export (`h.set_export_name(EXPORT)`).
    pub fn python(&self, script: &str) -> Result<String> {
        let out = self.python_bytes(script, &[], b"")?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// [`Server::python_bytes`] on this export.
    pub fn python_bytes(&self, script: &str, args: &[&str], stdin: &[u8]) -> Result<Vec<u8>> {
        let server = self.server;
        // The script runs from a file of its own, so a traceback names its lines as written
        // (and shows them).
        static SCRIPTS: AtomicU32 = AtomicU32::new(0);
        let script = dedent(script);
        let file = server.dir.path().join(format!(
            "script-{}.py",
            SCRIPTS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&file, &script)
            .map_err(|e| HarnessError::io(format!("cannot write {}", file.display()), e))?;
        let mut cmd = process::command("/usr/bin/python3");
        cmd.arg("-c")
            .arg(PYTHON_PRELUDE)
            .arg(&file)
            .args(args)
            .env("RUSTSHIM_HARNESS_URI", self.uri())
            .env("RUSTSHIM_HARNESS_SOCKET", server.socket())
            .env("RUSTSHIM_HARNESS_EXPORT", &self.name);
        let finished = server.run_client(&mut cmd, stdin, "/usr/bin/python3");
        let _ = std::fs::remove_file(&file);
        let finished = finished?;
        if String::from_utf8_lossy(&finished.stderr).contains("No module named 'nbd'")
            && !finished.status.is_some_and(|s| s.success())
        {
            return Err(HarnessError::NotFound(
                "/usr/bin/python3 has no `nbd` module: install libnbd's Python bindings \
                 (Debian: apt-get install python3-libnbd)"
                    .into(),
            ));
        }
        server.succeeded(&cmd, &script, finished)
    }

    /// [`Server::read`] on this export.
    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let data = self.python_bytes(
            &format!(
                "off, n = int(sys.argv[1]), int(sys.argv[2])\n\
                 while n > 0:\n    k = min(n, {CHUNK})\n    \
                 sys.stdout.buffer.write(h.pread(k, off))\n    off += k\n    n -= k\n\
                 sys.stdout.buffer.flush()"
            ),
            &[&offset.to_string(), &len.to_string()],
            b"",
        )?;
        if data.len() != len {
            return Err(HarnessError::Unexpected(format!(
                "reading {len} bytes at {offset} returned {} bytes",
                data.len()
            )));
        }
        Ok(data)
    }

    /// [`Server::write`] on this export.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.python_bytes(
            &format!(
                "off = int(sys.argv[1])\n\
                 data = sys.stdin.buffer.read()\n\
                 for i in range(0, len(data), {CHUNK}):\n    \
                 h.pwrite(data[i:i + {CHUNK}], off + i)"
            ),
            &[&offset.to_string()],
            data,
        )?;
        Ok(())
    }

    /// [`Server::size`] of this export.
    pub fn size(&self) -> Result<u64> {
        let out = self.nbdinfo(&["--size"])?;
        out.trim().parse().map_err(|_| {
            HarnessError::Unexpected(format!("`nbdinfo --size` printed {out:?}, not a size"))
        })
    }

    /// [`Server::nbdinfo`] on this export's URI.
    pub fn nbdinfo(&self, options: &[&str]) -> Result<String> {
        let mut cmd = process::command("nbdinfo");
        cmd.args(options).arg(self.uri());
        let finished = self.server.run_client(&mut cmd, b"", "nbdinfo")?;
        let out = self.server.succeeded(&cmd, "", finished)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// Percent-encodes bytes for an NBD URI (a socket path in its query, an export name in its
/// path): all but unreserved characters and `/`.
fn uri_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &byte in bytes {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Removes the indentation common to the script's non-blank lines.
fn dedent(script: &str) -> String {
    let indent = |line: &str| line.len() - line.trim_start_matches([' ', '\t']).len();
    let common = script
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(indent)
        .min()
        .unwrap_or(0);
    script
        .lines()
        .map(|line| line.get(common.min(indent(line))..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedent_removes_common_indentation() {
        assert_eq!(
            dedent("\n    a = 1\n\n    if a:\n        print(a)\n  "),
            "\na = 1\n\nif a:\n    print(a)\n"
        );
        assert_eq!(dedent("print(1)"), "print(1)");
    }

    #[test]
    fn socket_paths_are_encoded_for_uris() {
        assert_eq!(uri_encode(b"/tmp/a b/nbd.sock"), "/tmp/a%20b/nbd.sock");
        assert_eq!(uri_encode("disk 2?é".as_bytes()), "disk%202%3F%C3%A9");
    }
}
