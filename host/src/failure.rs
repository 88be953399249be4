//! [`Failure`]: how anything in the shim fails, from a refused parameter to a plugin callback's
//! error: the errno nbdkit passes to the client and a one-line message for its log.

use std::fmt;

use crate::nbdkit_c;

/// A failed step: the errno for nbdkit and a one-line message (empty: already logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What the client sees (nbdkit maps it to an NBD error).
    pub errno: i32,
    /// What nbdkit's log shows; empty when it was logged already.
    pub msg: String,
}

impl Failure {
    /// A failure with this errno and message.
    pub fn new(errno: i32, msg: impl Into<String>) -> Failure {
        Failure {
            errno,
            msg: msg.into(),
        }
    }

    /// `EINVAL` with this message: what the shim's own refusals are (a bad parameter, a plugin
    /// file that cannot be loaded).
    pub fn invalid(msg: impl Into<String>) -> Failure {
        Failure::new(libc::EINVAL, msg)
    }

    /// The same failure, its message marked as the shim's (`rustshim: …`), as nbdkit shows
    /// errors of the configuration and loading steps. One already logged (no message) stays so.
    pub fn from_shim(self) -> Failure {
        if self.msg.is_empty() {
            return self;
        }
        Failure {
            msg: format!("rustshim: {}", self.msg),
            ..self
        }
    }

    /// Tells nbdkit: the message to its log (unless empty), the errno to the client.
    pub fn report(&self) {
        if !self.msg.is_empty() {
            nbdkit_c::error(&self.msg);
        }
        nbdkit_c::set_errno(self.errno);
    }
}

/// A message alone is one of the shim's own refusals.
impl From<String> for Failure {
    fn from(msg: String) -> Failure {
        Failure::invalid(msg)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}
