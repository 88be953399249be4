//! The error type every callback returns: an errno for the NBD client and a message for the log.

use std::fmt;

/// An errno value, the error code a failed callback gives the NBD client: `Errno::ENOSPC`,
/// `Errno::EIO`, `Errno::from_raw(n)`, `errno.desc()` for its text.
///
/// This is the `nix` crate's enum of the platform's errno values, re-exported so that a plugin
/// needs no `nix` dependency (one that uses `nix` itself gets the same type from both). Of its
/// methods below, a plugin needs the variants, `from_raw` and `desc`; `last`, `set` and `clear`
/// (with `nix`'s examples) are about the thread's C `errno`, which the shim handles: a callback
/// reports its errno by returning an [`Error`].
///
/// What the client sees of it: NBD carries only a few error codes, and nbdkit maps the others
/// to `EINVAL` (see [`Error`] and `nbdkit_set_error(3)`):
///
/// | errno | the client gets | for |
/// |---|---|---|
/// | `EROFS`, `EPERM` | `EPERM` | writing where the plugin cannot |
/// | `EIO` | `EIO` | a failed read or write (the default of a panic, and of `Error::other`) |
/// | `ENOMEM` | `ENOMEM` | out of memory |
/// | `ENOSPC`, `EFBIG`, `EDQUOT` | `ENOSPC` | out of space |
/// | `ESHUTDOWN` | `ESHUTDOWN` | the server is shutting down |
/// | `ENOTSUP`, `EOPNOTSUPP` | `ENOTSUP` on a fast zero, else `EINVAL` | a fast zero the plugin cannot do fast |
/// | `EOVERFLOW` | `EOVERFLOW` on a read with the DF flag, else `EINVAL` | a read too large for one structured reply |
/// | `EINVAL` and anything else | `EINVAL` | a bad request, or bad configuration |
///
/// ```
/// use rustshim_plugin_api::{Errno, Error};
///
/// let e = Error::new(Errno::ENOSPC, "disk full");
/// assert_eq!(e.errno(), Errno::ENOSPC);
/// assert_eq!(Errno::from_raw(28), Errno::ENOSPC);
/// assert_eq!(Errno::ENOSPC as i32, 28);
/// assert_eq!(Errno::ENOSPC.desc(), "No space left on device");
/// ```
#[doc(inline)]
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

    /// An error with this errno whose message is anything displayable: another crate's error
    /// (a `thiserror` enum, an `anyhow::Error`, whose alternate form `{:#}` shows its chain of
    /// causes, which this uses), or a plain string.
    ///
    /// ```
    /// use rustshim_plugin_api::{Errno, Error, Result};
    ///
    /// fn block_count(value: &str) -> Result<u64> {
    ///     value.parse::<u64>().map_err(|e| Error::other(Errno::EINVAL, e))
    /// }
    /// assert_eq!(
    ///     block_count("x").unwrap_err().message(),
    ///     "invalid digit found in string"
    /// );
    /// ```
    ///
    /// With `anyhow` (or any error type without its own conversion):
    /// `result.map_err(|e| Error::other(Errno::EIO, e))?`, or `?` alone where the error converts
    /// into a `Box<dyn std::error::Error + Send + Sync>` (see the `From` impls below, `EIO`).
    pub fn other(errno: Errno, message: impl fmt::Display) -> Self {
        Error::new(errno, format!("{message:#}"))
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

/// The message of `e` and of each of its causes (`source()`), joined by `: `, as `anyhow`
/// shows a chain, leaving out a cause whose text the message already ends with.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    message
}

/// What a boxed error becomes: this crate's own [`Error`] as it is, an [`std::io::Error`] with
/// its OS errno, anything else `EIO` with its chain of messages.
fn from_boxed(e: Box<dyn std::error::Error + 'static>) -> Error {
    let e = match e.downcast::<Error>() {
        Ok(ours) => return *ours,
        Err(e) => e,
    };
    if let Some(errno) = e
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::raw_os_error)
    {
        return Error::new(Errno::from_raw(errno), chain(&*e));
    }
    Error::new(Errno::EIO, chain(&*e))
}

impl From<Box<dyn std::error::Error + Send + Sync>> for Error {
    /// Any error type, boxed (what `?` makes of a `thiserror` enum in a function returning
    /// `Result<T, Box<dyn Error + Send + Sync>>`, or of an `anyhow::Error` with `.into()`):
    /// `EIO`, with the messages of its chain of causes. An [`std::io::Error`] inside keeps its
    /// OS errno, and this crate's [`Error`] is unwrapped as it was.
    ///
    /// ```
    /// use rustshim_plugin_api::{Errno, Error, Result};
    ///
    /// #[derive(Debug)]
    /// struct Corrupt(u64);
    /// impl std::fmt::Display for Corrupt {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         write!(f, "block {} is corrupt", self.0)
    ///     }
    /// }
    /// impl std::error::Error for Corrupt {}
    ///
    /// fn check(block: u64) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
    ///     Err(Box::new(Corrupt(block)))
    /// }
    /// fn pread_block(block: u64) -> Result<()> {
    ///     check(block)?;
    ///     Ok(())
    /// }
    /// let e = pread_block(7).unwrap_err();
    /// assert_eq!((e.errno(), e.message()), (Errno::EIO, "block 7 is corrupt"));
    /// ```
    fn from(e: Box<dyn std::error::Error + Send + Sync>) -> Self {
        from_boxed(e)
    }
}

impl From<Box<dyn std::error::Error>> for Error {
    /// As for `Box<dyn Error + Send + Sync>`: `EIO` with the chain of messages, an
    /// [`std::io::Error`]'s OS errno kept.
    fn from(e: Box<dyn std::error::Error>) -> Self {
        from_boxed(e)
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
    fn other_errors_keep_their_messages_and_errnos() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("cannot read the index")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let enospc = || std::io::Error::from_raw_os_error(libc_enospc());
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(Outer(enospc()));
        let e = Error::from(boxed);
        assert_eq!(e.errno(), Errno::EIO);
        assert!(
            e.message()
                .starts_with("cannot read the index: No space left on device"),
            "{e}"
        );
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(enospc());
        assert_eq!(Error::from(boxed).errno(), Errno::ENOSPC);
        let ours: Box<dyn std::error::Error> = Box::new(Error::new(Errno::EROFS, "ro"));
        assert_eq!(Error::from(ours), Error::new(Errno::EROFS, "ro"));
        let plain: Box<dyn std::error::Error + Send + Sync> = "just text".into();
        assert_eq!(Error::from(plain), Error::new(Errno::EIO, "just text"));
        assert_eq!(
            Error::other(Errno::EINVAL, format_args!("bad {}", 1)),
            Error::invalid("bad 1")
        );
    }

    #[test]
    fn context_prefixes() {
        assert_eq!(
            Error::invalid("bad").context("size").to_string(),
            "size: bad"
        );
    }
}
