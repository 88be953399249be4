//! The clients a [`Server`] comes with: Python scripts with libnbd, reads, writes and
//! `nbdinfo`, each under the server's time limit.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{HarnessError, Result};
use crate::process;
use crate::server::Server;

/// The largest request the clients here send at once.
const CHUNK: usize = 4 << 20;

/// Runs the script file `sys.argv[1]` with `h` connected to the server, as `nbdsh` would;
/// the script sees its own path as `sys.argv[0]` and its arguments after it.
const PYTHON_PRELUDE: &str = "\
import os, sys
import nbd
sys.argv = sys.argv[1:]
URI = os.environ['RUSTSHIM_HARNESS_URI']
SOCKET = os.environ['RUSTSHIM_HARNESS_SOCKET']
h = nbd.NBD()
h.connect_unix(SOCKET)
exec(compile(open(sys.argv[0]).read(), sys.argv[0], 'exec'))
try:
    h.shutdown()
except Exception:
    pass
";

impl Server {
    /// The NBD URI of the export: `nbd+unix:///?socket=SOCKET`, for any NBD client.
    pub fn uri(&self) -> String {
        format!("nbd+unix:///?socket={}", uri_encode(self.socket()))
    }

    /// Runs a Python 3 script with libnbd's `nbd` module (`/usr/bin/python3`, Debian's
    /// python3-libnbd) and returns what it printed. The script starts with `h`, an `nbd.NBD()`
    /// handle connected to the server, and `URI` and `SOCKET` defined, as in `nbdsh`; a common
    /// indentation is removed, so it can be an indented raw string. An exception fails the call
    /// with its traceback.
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
        let out = self.python_bytes(script, &[], b"")?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Like [`python`](Self::python), with `args` in `sys.argv[1:]`, `stdin` as its input, and
    /// its output as bytes.
    pub fn python_bytes(&self, script: &str, args: &[&str], stdin: &[u8]) -> Result<Vec<u8>> {
        // The script runs from a file of its own, so a traceback names its lines as written
        // (and shows them).
        static SCRIPTS: AtomicU32 = AtomicU32::new(0);
        let script = dedent(script);
        let file = self.dir.path().join(format!(
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
            .env("RUSTSHIM_HARNESS_SOCKET", self.socket());
        let finished = self.run_client(&mut cmd, stdin, "/usr/bin/python3");
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
        self.succeeded(&cmd, &script, finished)
    }

    /// Reads `len` bytes at `offset` of the export.
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

    /// Writes `data` at `offset` of the export (each request returns once the plugin's
    /// `pwrite` has; no flush is sent).
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

    /// The size of the export in bytes (`nbdinfo --size`).
    pub fn size(&self) -> Result<u64> {
        let out = self.nbdinfo(&["--size"])?;
        out.trim().parse().map_err(|_| {
            HarnessError::Unexpected(format!("`nbdinfo --size` printed {out:?}, not a size"))
        })
    }

    /// Runs `nbdinfo OPTIONS URI` (libnbd-bin) and returns what it printed: try `--json`,
    /// `--map`, `--can write`, `--is rotational`, `--list`.
    pub fn nbdinfo(&self, options: &[&str]) -> Result<String> {
        let mut cmd = process::command("nbdinfo");
        cmd.args(options).arg(self.uri());
        let finished = self.run_client(&mut cmd, b"", "nbdinfo")?;
        let out = self.succeeded(&cmd, "", finished)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
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

/// Percent-encodes a socket path for the query of an NBD URI.
fn uri_encode(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &byte in path.as_os_str().as_bytes() {
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
        assert_eq!(
            uri_encode(Path::new("/tmp/a b/nbd.sock")),
            "/tmp/a%20b/nbd.sock"
        );
    }
}
