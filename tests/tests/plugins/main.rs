//! What a plugin's callbacks do through the shim, the example plugins against their C twins,
//! nbdkit's server functions, containment of a misbehaving plugin, and memory safety under valgrind.
//!
//! One test binary per area (`cargo test -p rustshim-tests --test plugins`), a module per
//! file; a test is named `MODULE::TEST`.

mod block_size_vs_nbdkit;
mod blocking;
mod callbacks_connection;
mod callbacks_data;
mod callbacks_errors;
mod callbacks_lifecycle;
mod callbacks_threads;
mod containment;
mod defaults;
mod faults;
mod file;
mod memcheck;
mod memory;
mod memory_layout;
mod nbdkit_148_answers;
mod newer_server_functions;
mod null;
mod parsers;
mod peer_tls;
mod server_functions;
mod stress;
mod twin_file;
mod twin_memory;
mod twin_null;
