//! A filter layer's command line: its own keys, and the routing of everything else.
//!
//! nbdkit gives every `key=value` to the outermost filter first; each layer passes on what it
//! does not own. For a `rustshim` layer:
//! * `filter=PATH|NAME`: the first one is this layer's Rust filter; a later one belongs to the
//!   next `--filter=rustshim` below, and from there on every key is passed on unchanged: the
//!   keys after a `filter=` are that filter's (`filter=a.so x=1 filter=b.so x=2`: `a` sees
//!   `x=1`, `b` sees `x=2`, so one filter can be stacked twice with its own parameters).
//! * `filter-reload=watch|off`, `allow-insecure-filter=true`: the layer's options (like the
//!   plugin's `reload=` and `allow-insecure-plugin=`, named apart so that a filter above the
//!   `rustshim` plugin does not take the plugin's).
//! * Anything else goes to the Rust filter's `config`, which passes on what it does not own (or
//!   straight to the layer below if the filter has no `config`). Pairs given before `filter=`
//!   wait and are given to the filter once it is loaded.

use std::ffi::{c_void, CStr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rustshim_plugin_api::abi::{FilterModuleRef, LayerNext, RStr};

use super::layer::Layer;
use super::services;
use crate::failure::Failure;
use crate::generation::Generation;
use crate::services::take_error;

/// `filter-reload=`.
pub const RELOAD_KEY: &str = "filter-reload";
/// `allow-insecure-filter=`.
pub const ALLOW_INSECURE_KEY: &str = "allow-insecure-filter";

/// The text of `nbdkit --filter=rustshim --help`.
pub const CONFIG_HELP: &CStr =
    c"filter=PATH|NAME       (required) The Rust filter to load: a .so built with
                       rustshim-plugin-api. A NAME (no '/' or '.') is looked up as
                       librustshim_filter_NAME.so or libNAME.so in
                       $RUSTSHIM_FILTER_PATH, then in rustshim/ beside this shim.
                       Stack several: --filter=rustshim --filter=rustshim PLUGIN
                       filter=A [A's keys] filter=B [B's keys]: each later
                       filter= and the keys after it go to the next layer.
allow-insecure-filter=true
                       Load the filter even if others could write to it or to a
                       directory above it (refused by default).
filter-reload=watch    Load each new build of the filter file while serving:
                       new connections get the new build, open ones keep theirs
                       (default: filter-reload=off).
[KEY=VALUE ...]        Anything else goes to the Rust filter, which passes on what
                       it does not own: see --dump-plugin.";

/// Handles one `key=value` of nbdkit's `.config` for `layer`; `next` passes a pair on. Errors
/// are one line, not yet reported.
pub fn config(layer: &Layer, next: LayerNext, key: &str, value: &str) -> Result<(), Failure> {
    remember_next(layer, next);
    if layer.passed_filter.load(Ordering::Acquire) {
        return pass(next, key, value);
    }
    match key {
        "filter" if layer.options().path.is_none() => {
            layer.options().set_path("filter", value, "filter=")
        }
        "filter" => {
            layer.passed_filter.store(true, Ordering::Release);
            pass(next, key, value)
        }
        RELOAD_KEY => layer.options().set_reload(key, value),
        ALLOW_INSECURE_KEY => layer.options().set_allow_insecure(key, value),
        _ => {
            let mut options = layer.options();
            if options.path.is_none() {
                options.pending.push((key.to_owned(), value.to_owned()));
                return Ok(());
            }
            drop(options);
            let generation = loaded(layer)?;
            give(layer, &generation, next, key, value)
        }
    }
}

/// The layer's Rust filter, loaded now if needed, with the pairs that waited for it given to it
/// (through the `next` of the last `.config` call: nbdkit's is the same for every call).
pub fn loaded(layer: &Layer) -> Result<Arc<Generation<FilterModuleRef>>, Failure> {
    let generation = layer.filter()?;
    let pending = std::mem::take(&mut layer.options().pending);
    if !pending.is_empty() {
        let next = LayerNext {
            func: layer.config_next.0.load(Ordering::Acquire),
            data: layer.config_next.1.load(Ordering::Acquire),
        };
        for (key, value) in pending {
            give(layer, &generation, next, &key, &value)?;
        }
    }
    Ok(generation)
}

fn remember_next(layer: &Layer, next: LayerNext) {
    layer
        .config_next
        .0
        .store(next.func as *mut c_void, Ordering::Release);
    layer.config_next.1.store(next.data, Ordering::Release);
}

/// Passes a pair to the layer below.
fn pass(next: LayerNext, key: &str, value: &str) -> Result<(), Failure> {
    match services::pass_config(next, key, value) {
        0 => Ok(()),
        errno => Err(Failure::new(errno, "")),
    }
}

/// Gives one pair to the Rust filter (recorded for a reload), or passes it on if the filter has
/// no `config`.
fn give(
    layer: &Layer,
    generation: &Generation<FilterModuleRef>,
    next: LayerNext,
    key: &str,
    value: &str,
) -> Result<(), Failure> {
    layer.slot.record(key, value);
    let Some(f) = generation.module.config() else {
        return pass(next, key, value);
    };
    crate::services::take_logged();
    // SAFETY: configuration runs single-threaded before serving (the threading contract);
    // `next` is nbdkit's for this `.config` call.
    let r = unsafe {
        f(
            generation.instance,
            next,
            RStr::from_str(key),
            RStr::from_str(value),
        )
    };
    if r != 0 {
        let msg = take_error().msg;
        return Err(Failure::invalid(if !msg.is_empty() {
            msg
        } else if crate::services::take_logged() {
            // A server function or the layer below failed and said why: one line.
            String::new()
        } else {
            format!("filter '{}': {key}={value} was refused", generation.name())
        }));
    }
    Ok(())
}
