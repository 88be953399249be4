//! Rust filters: the example filters against their C twins, every callback, the layer below
//! (`next`), loading, hot reload, and compatibility across filter builds.
//!
//! One test binary per area (`cargo test -p rustshim-tests --test filters`), a module per
//! file; a test is named `MODULE::TEST`.

mod filters_callbacks;
mod filters_compat;
mod filters_loading;
mod filters_next;
mod filters_reload;
mod twins;
