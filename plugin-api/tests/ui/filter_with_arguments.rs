// `#[filter]` takes no arguments.
use rustshim_plugin_api::prelude::*;

#[derive(Default)]
struct Layer;

#[filter(name = "layer")]
impl Filter for Layer {
    type Handle = ();
    const NAME: &'static str = "layer";
}

fn main() {}
