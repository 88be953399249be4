//! Helpers for the integration tests, one module per idea, all re-exported here so a test file
//! starts with `use rustshim_tests::*;`:
//!
//! * `artifacts`: the shim, the plugins and the test plugin's variants (built if needed), and
//!   the files under `tests/` (`fixtures/`, `scripts/`);
//! * `nbdkit`: running nbdkit (in the foreground, in the background as a
//!   [`rustshim_harness::Server`], or started by a client) and clients, all through
//!   `rustshim-harness`, so `RUSTSHIM_ROOT` moves them all into another Debian root, each under
//!   a time limit;
//! * `clients`: Python clients with libnbd;
//! * `trace`: the test plugin's trace file;
//! * `files`: temporary directories, pattern data, new builds landing on a watched path;
//! * `inputs`: generated inputs for nbdkit's parsers;
//! * [`fixtures`]: plugins built in workspaces of their own, as a third party would;
//! * [`history`]: the shim and plugins of earlier commits (earlier releases of the ABI);
//! * `authors`: cargo and `cargo rustshim` on crates outside the workspace, as an author runs
//!   them.

mod artifacts;
mod authors;
mod clients;
mod files;
pub mod filters;
pub mod fixtures;
pub mod history;
mod inputs;
pub mod twin;
pub use fixtures::API_VERSION;
mod nbdkit;
mod trace;

pub use artifacts::*;
pub use authors::*;
pub use clients::*;
pub use files::*;
pub use inputs::*;
pub use nbdkit::*;
pub use rustshim_harness::{Server, ServerBuilder, TempDir};
pub use trace::*;
