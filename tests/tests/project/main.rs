//! The project's own shape: architecture invariants, the bench's smoke run and the page lock's
//! loom model.
//!
//! One test binary per area (`cargo test -p rustshim-tests --test project`), a module per
//! file; a test is named `MODULE::TEST`.

mod architecture;
mod bench_smoke;
mod page_lock_model;
