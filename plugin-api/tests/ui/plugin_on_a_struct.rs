// `#[plugin]` goes on the `impl Plugin for T` block, not on the type.
use rustshim_plugin_api::prelude::*;

#[plugin]
#[derive(Default)]
struct Disk;

fn main() {}
