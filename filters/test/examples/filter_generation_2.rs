//! Build 2 of the `generation` filter (the code is in `generation/filter.rs`).

const BUILD: u32 = 2;

include!("generation/filter.rs");
