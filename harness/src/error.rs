//! [`HarnessError`]: everything that can go wrong, each with what to do about it.

use std::fmt;
use std::io;

/// Why the harness could not do what was asked. Its `Display` is meant for a failing test's
/// output: it says what was run and includes nbdkit's log or the client's stderr. `Debug` shows
/// the same text, so `.unwrap()` and a test returning `Result<(), HarnessError>` print it
/// readably too.
#[non_exhaustive]
pub enum HarnessError {
    /// nbdkit or the rustshim plugin (the shim) was not found; the message says how to get it.
    NotFound(String),
    /// The plugin crate's cdylib could not be built (cargo's messages included).
    Build(String),
    /// nbdkit exited, or did not become ready in time, before serving.
    Start {
        /// The nbdkit command line.
        command: String,
        /// What happened (`exited before serving (exit status: 1)`, `was not serving within
        /// 60s (killed)`).
        reason: String,
        /// nbdkit's stderr.
        log: String,
    },
    /// A client program failed or timed out.
    Client {
        /// The client's command line.
        command: String,
        /// The Python script it ran, if it was [`Server::python`](crate::Server::python) or
        /// another method that runs one (empty otherwise).
        script: String,
        /// How it ended (`exit status: 1`, `timed out after 60 s`).
        status: String,
        /// Its stderr (a Python traceback, nbdinfo's message).
        stderr: String,
        /// nbdkit's log at that moment, if a server was involved.
        log: String,
    },
    /// A program run to its end ([`run`](crate::run), [`ServerBuilder::run`](crate::ServerBuilder::run))
    /// was still running at its time limit, or a child it left behind still held its output
    /// open then; it was killed.
    TimedOut {
        /// Its command line.
        command: String,
        /// The time limit.
        after: std::time::Duration,
        /// What it printed on stdout until then.
        stdout: String,
        /// What it printed on stderr until then.
        stderr: String,
    },
    /// A client's output was not what the harness expected (say, `nbdinfo --size` printed no
    /// number).
    Unexpected(String),
    /// An I/O error.
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
}

impl HarnessError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> HarnessError {
        HarnessError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Writes `text` indented, or `(empty)`.
fn block(f: &mut fmt::Formatter<'_>, title: &str, text: &str) -> fmt::Result {
    let text = text.trim_end();
    if text.is_empty() {
        write!(f, "\n{title}: (empty)")
    } else {
        write!(f, "\n{title}:")?;
        for line in text.lines() {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarnessError::NotFound(message) | HarnessError::Build(message) => {
                write!(f, "rustshim-harness: {message}")
            }
            HarnessError::Unexpected(message) => write!(f, "rustshim-harness: {message}"),
            HarnessError::Start {
                command,
                reason,
                log,
            } => {
                write!(f, "rustshim-harness: nbdkit {reason}")?;
                write!(f, "\ncommand: {command}")?;
                block(f, "nbdkit's stderr", log)
            }
            HarnessError::Client {
                command,
                script,
                status,
                stderr,
                log,
            } => {
                write!(f, "rustshim-harness: client failed ({status})")?;
                write!(f, "\ncommand: {command}")?;
                if !script.is_empty() {
                    let numbered: Vec<String> = script
                        .lines()
                        .enumerate()
                        .map(|(i, line)| format!("{:>3}  {line}", i + 1))
                        .collect();
                    block(f, "script", &numbered.join("\n"))?;
                }
                block(f, "its stderr", stderr)?;
                if !log.trim().is_empty() {
                    block(f, "nbdkit's stderr", log)?;
                }
                Ok(())
            }
            HarnessError::TimedOut {
                command,
                after,
                stdout,
                stderr,
            } => {
                write!(f, "rustshim-harness: did not end within {after:?} (killed)")?;
                write!(f, "\ncommand: {command}")?;
                block(f, "its stdout", stdout)?;
                block(f, "its stderr", stderr)
            }
            HarnessError::Io { context, source } => {
                write!(f, "rustshim-harness: {context}: {source}")
            }
        }
    }
}

impl fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for HarnessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HarnessError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The harness's `Result`.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
