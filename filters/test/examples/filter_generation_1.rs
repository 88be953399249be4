//! Build 1 of the `generation` filter (the code is in `generation/filter.rs`).

const BUILD: u32 = 1;

include!("generation/filter.rs");
