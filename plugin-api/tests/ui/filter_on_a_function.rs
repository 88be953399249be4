// `#[filter]` goes on the `impl Filter for T` block: a function has a body, but is no impl.
use rustshim_plugin_api::prelude::*;

#[filter]
fn layer() -> u32 {
    0
}

fn main() {}
