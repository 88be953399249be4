//! The compatibility promise for filters, proven as for plugins (`compatibility.rs`) with
//! separately built binaries: `plugin-api`'s next minor appends a filter callback and a
//! `FilterServices` function; a 1.0 filter runs on the 1.1 shim, a 1.1 filter on the 1.0 shim
//! unless it implements the new callback (refused by name).

use std::path::PathBuf;
use std::sync::OnceLock;

use rustshim_tests::filters::*;
use rustshim_tests::fixtures::{build, next_minor, ApiCopy, Workspace};
use rustshim_tests::*;

/// `plugin-api`'s next minor: a filter callback and a filter service appended at the "go here"
/// markers of `abi/filter.rs`.
const API_1_1_EDITS: &[(&str, &str, &str)] = &[
    (
        "src/abi/filter.rs",
        "            // Callbacks added in later minor versions go here",
        "            /// Added in 1.1.\n            [38] new_filter_callback: (Option<unsafe extern \"C\" fn(instance: InstancePtr) -> i32>),\n            // Callbacks added in later minor versions go here",
    ),
    (
        "src/abi/filter.rs",
        "    // Services added in later minor versions go here.",
        "    /// Added in 1.1.\n    pub filter_added_in_1_1: extern \"C\" fn() -> i32,\n    // Services added in later minor versions go here.",
    ),
    (
        "src/filter/mod.rs",
        "    // ---- Shutting down ----",
        "    /// Added in 1.1.\n    fn new_filter_callback(&self) -> Result<()> {\n        Ok(())\n    }\n\n    // ---- Shutting down ----",
    ),
    (
        "src/adapter/filter.rs",
        "// Callbacks added in later minor versions go here.",
        "unsafe extern \"C\" fn new_filter_callback<T: Filter>(i: InstancePtr) -> i32 {\n    let f = unsafe { instance::<T>(i) };\n    status(guard(T::NAME, \"new_filter_callback\", || f.new_filter_callback()))\n}\n\n// Callbacks added in later minor versions go here.",
    ),
];

/// The shim built against 1.1 fills the new service.
const SHIM_1_1_EDITS: &[(&str, &str, &str)] = &[
    (
        "src/filter/services.rs",
        "            // Services added in later minor versions go here.",
        "            filter_added_in_1_1,\n            // Services added in later minor versions go here.",
    ),
    (
        "src/filter/services.rs",
        "/// A string for nbdkit that lives as long",
        "extern \"C\" fn filter_added_in_1_1() -> i32 {\n    11\n}\n\n/// A string for nbdkit that lives as long",
    ),
];

const FILTER: &str = r#"
use rustshim_plugin_api::prelude::*;
#[derive(Default)]
struct Fixture;
#[filter]
impl Filter for Fixture {
    type Handle = ();
    const NAME: &'static str = "fixture";
    fn pread(&self, next: &Next<'_>, _: &(), buf: &mut [u8], offset: u64, flags: Flags) -> Result<()> {
        next.pread(buf, offset, flags)?;
        buf.iter_mut().for_each(|b| *b ^= 0x5a);
        Ok(())
    }
}
export_filter!(Fixture);
"#;

struct V11 {
    shim: PathBuf,
    plain: PathBuf,
    uses_new: PathBuf,
}

fn v1_1() -> &'static V11 {
    static BUILT: OnceLock<V11> = OnceLock::new();
    BUILT.get_or_init(|| {
        let uses_new = FILTER.replace(
            "    fn pread(",
            "    fn new_filter_callback(&self) -> Result<()> { Ok(()) }\n    fn pread(",
        );
        let built = build(&Workspace {
            name: "filter_compat_1_1",
            api: &ApiCopy {
                version: &next_minor(),
                edits: API_1_1_EDITS,
            },
            plugins: &[
                ("filter_plain_1_1", FILTER),
                ("filter_uses_new_1_1", &uses_new),
            ],
            shim_edits: Some(SHIM_1_1_EDITS),
            // Its shim copy must not land where `compatibility.rs`'s 1.1 shim does.
            target: "target-filter-compat",
            ..Workspace::default()
        });
        V11 {
            shim: built.shim.unwrap(),
            plain: built.plugins[0].clone(),
            uses_new: built.plugins[1].clone(),
        }
    })
}

/// `nbdkit --filter=SHIM memory 1M filter=FILTER` reading 2 bytes of the (zeroed) disk.
fn read_through(shim: &std::path::Path, filter: &std::path::Path) -> Run {
    let args = nbdkit_words(&[
        format!("--filter={}", shim.display()),
        "memory".into(),
        "1M".into(),
        format!("filter={}", filter.display()),
    ]);
    nbdsh_with(&args, "print(list(h.pread(2, 0)))")
}

#[test]
fn an_old_filter_runs_on_a_newer_shim() {
    let old = build(&Workspace {
        name: "filter_compat_1_0",
        plugins: &[("filter_plain_1_0", FILTER)],
        ..Workspace::default()
    })
    .plugins
    .remove(0);
    let out = read_through(&v1_1().shim, &old).ok();
    assert_eq!(out.stdout.trim(), "[90, 90]");
}

#[test]
fn a_newer_filter_runs_on_an_older_shim_if_it_uses_only_what_the_shim_has() {
    let out = read_through(&shim(), &v1_1().plain).ok();
    assert_eq!(out.stdout.trim(), "[90, 90]");
}

#[test]
fn a_newer_filter_that_needs_more_than_the_older_shim_has_is_refused_by_name() {
    let out = read_through(&shim(), &v1_1().uses_new).failed();
    assert!(
        out.stderr.contains(&format!("implements callbacks this shim cannot call: new_filter_callback (the filter was built against rustshim-plugin-api {}, this shim speaks {API_VERSION})", next_minor())),
        "{}",
        out.stderr
    );
}
