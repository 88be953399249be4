//! The shim is also a program, run for trial loads of plugin files (`src/probe.rs`): its entry
//! point. (nbdkit's headers are measured by unit tests when they run, not here: see
//! `layout_tests` in `src/nbdkit_c.rs`.)

fn main() {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch == "x86_64" || arch == "aarch64" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-e,rustshim_probe_entry");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
