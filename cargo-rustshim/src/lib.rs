//! `cargo rustshim`: the plugin author's commands for nbdkit-rustshim, from any plugin or filter
//! crate directory, without a checkout of nbdkit-rustshim.
//!
//! | command | what it does | module |
//! |---|---|---|
//! | `cargo rustshim new NAME [--filter]` | writes a plugin (or filter) crate that builds, serves and tests as it is | [`new`] |
//! | `cargo rustshim run [ARGS]` | builds and serves the crate with `reload=watch`, rebuilding on every change | [`run`] |
//! | `cargo rustshim test [--nbdkit WHICH]` | the crate's tests against each nbdkit of the matrix | [`test`] |
//! | `cargo rustshim package` | a Debian package of the crate's plugin, depending on the shim's | [`package`] |
//! | `cargo rustshim doctor` | which nbdkit, shim and ABI; whether they fit the crate; each problem with its fix | [`doctor`] |
//!
//! The project's own commands (`cargo xtask` in the nbdkit-rustshim checkout) use this library
//! for what they share with these: `cargo xtask new-plugin` and `cargo xtask dev` are calls into
//! [`new`] and [`run`]; the Debian roots of the version matrix ([`roots`]), the system packages
//! ([`deps`]) and the Debian package writer ([`deb`]) are the same code for both.
//!
//! Errors are messages for the person at the terminal: `Result<T, String>`.

pub mod cmd;
pub mod deb;
pub mod deps;
pub mod doctor;
pub mod new;
pub mod package;
pub mod plugin_crate;
pub mod roots;
pub mod run;
pub mod serve;
pub mod signals;
pub mod test;

/// Errors are messages for the person at the terminal.
pub type Result<T = ()> = std::result::Result<T, String>;
