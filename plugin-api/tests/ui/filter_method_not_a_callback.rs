// A method in the `#[filter]` block that is no filter callback.
use rustshim_plugin_api::prelude::*;

#[derive(Default)]
struct Layer;

#[filter]
impl Filter for Layer {
    type Handle = ();
    const NAME: &'static str = "layer";
    fn helper(&self) -> u64 {
        1
    }
}

fn main() {}
