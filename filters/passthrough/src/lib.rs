//! `passthrough`: a filter that changes nothing, the twin of nbdkit's `nofilter` filter. Every
//! call goes to the layer below as if the filter were not there, which measures what the shims
//! cost.
//!
//! ```text
//! nbdkit --filter=rustshim filter=passthrough memory 1G
//! ```

use rustshim_plugin_api::prelude::*;

#[derive(Default)]
struct Passthrough;

#[filter]
impl Filter for Passthrough {
    type Handle = ();

    const NAME: &'static str = "passthrough";
    const LONGNAME: Option<&'static str> = Some("Rust pass-through filter");
    const VERSION: Option<&'static str> = Some(env!("CARGO_PKG_VERSION"));
    const DESCRIPTION: Option<&'static str> =
        Some("Changes nothing: every call goes to the layer below (like nbdkit's nofilter).");
}

export_filter!(Passthrough);
