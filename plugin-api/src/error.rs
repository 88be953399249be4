//! The error type every callback returns: an errno for the NBD client and a message for the log.

use std::fmt;

pub use nix::errno::Errno;

/// The result of a plugin callback.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed callback: the errno the client sees (nbdkit maps it to an NBD error) and a message
/// for nbdkit's log.
///
/// NBD carries only a few error codes: `EROFS`/`EPERM`, `EIO`, `ENOMEM`, `ENOSPC`/`EFBIG`/
/// `EDQUOT`, `ESHUTDOWN`, `ENOTSUP` (only for fast zero), `EOVERFLOW`; anything else reaches the
/// client as `EINVAL`. See `nbdkit_set_error(3)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    errno: Errno,
    message: String,
    logged: bool,
}

impl Error {
    /// An error with the given errno and message.
    pub fn new(errno: Errno, message: impl Into<String>) -> Self {
        Error {
            errno,
            message: message.into(),
            logged: false,
        }
    }

    /// An error whose cause nbdkit has already logged (for example a failed `nbdkit_parse_size`):
    /// only the errno is passed on.
    pub fn already_logged(errno: Errno, message: impl Into<String>) -> Self {
        Error {
            errno,
            message: message.into(),
            logged: true,
        }
    }

    /// `EINVAL` with a message: the usual error for bad configuration.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(Errno::EINVAL, message)
    }

    /// The errno the client will see.
    pub fn errno(&self) -> Errno {
        self.errno
    }

    /// The message for the log.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether nbdkit has already logged this error's cause.
    pub fn is_logged(&self) -> bool {
        self.logged
    }

    /// Prefixes the message with some context, as in `"size: " + message`.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.errno.desc())
        } else {
            f.write_str(&self.message)
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?}: {:?})", self.errno, self.message)
    }
}

impl std::error::Error for Error {}

impl From<Errno> for Error {
    fn from(errno: Errno) -> Self {
        Error::new(errno, errno.desc())
    }
}

impl From<std::io::Error> for Error {
    /// Keeps the OS errno when there is one, `EIO` otherwise.
    fn from(e: std::io::Error) -> Self {
        let errno = e.raw_os_error().map(Errno::from_raw).unwrap_or(Errno::EIO);
        Error::new(errno, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_keep_their_errno() {
        let e: Error = std::io::Error::from_raw_os_error(libc_enospc()).into();
        assert_eq!(e.errno(), Errno::ENOSPC);
        let e: Error = std::io::Error::other("odd").into();
        assert_eq!(e.errno(), Errno::EIO);
        assert_eq!(e.to_string(), "odd");
    }

    fn libc_enospc() -> i32 {
        Errno::ENOSPC as i32
    }

    #[test]
    fn context_prefixes() {
        assert_eq!(
            Error::invalid("bad").context("size").to_string(),
            "size: bad"
        );
    }
}
