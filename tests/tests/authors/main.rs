//! What a plugin author uses: the harness, the API's helpers and messages, `cargo rustshim`,
//! the README's and guides' examples, and the Debian packages.
//!
//! One test binary per area (`cargo test -p rustshim-tests --test authors`), a module per
//! file; a test is named `MODULE::TEST`.

mod author_harness;
mod author_locks;
mod author_messages;
mod author_new_plugin;
mod author_parsers;
mod author_plugin_info;
mod author_tools;
mod cargo_rustshim;
mod package;
mod readme;
