//! Hot reload (`reload=watch`): generations, hand-over of state, races, storms, load, paths,
//! the retire limit, permissions of new builds and the descriptor limit.
//!
//! One test binary per area (`cargo test -p rustshim-tests --test reload`), a module per
//! file; a test is named `MODULE::TEST`.

mod generations;
mod reload_fd_limit;
mod reload_handover;
mod reload_paths;
mod reload_permissions;
mod reload_race;
mod reload_retire;
mod reload_storm;
mod reload_under_load;
mod reload_watch;
