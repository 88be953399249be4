//! Loading a plugin file: the command line, refusals of bad, damaged or foreign files, lookup and
//! permissions, nothing left behind, and which builds load in which shim.
//!
//! One test binary per area (`cargo test -p rustshim-tests --test loading`), a module per
//! file; a test is named `MODULE::TEST`.

mod abi_history;
mod command_line;
mod compatibility;
mod corrupt_files;
mod leftovers;
mod native_looking_plugins;
mod plugin_file_errors;
mod plugin_lookup_and_permissions;
