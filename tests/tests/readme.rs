//! The README's plugin and filter author quick starts, each built out of tree exactly as written
//! and served through the shim: the docs cannot drift from the API.

use rustshim_tests::fixtures::{build_plugin, ApiCopy};
use rustshim_tests::*;

/// The first ```rust example after `section` in the README.
fn readme_source(section: &str) -> String {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let from = readme.find(section).expect("README has the section");
    let start = from
        + readme[from..]
            .find("```rust\n")
            .expect("the section has a rust example")
        + "```rust\n".len();
    let len = readme[start..].find("```").unwrap();
    readme[start..start + len].to_string()
}

fn readme_plugin_source() -> String {
    readme_source("## Writing a plugin")
}

#[test]
fn the_readme_example_builds_and_serves_its_pattern() {
    let so = build_plugin(
        "readme_example",
        &ApiCopy {
            version: API_VERSION,
            edits: &[],
        },
        &readme_plugin_source(),
        &[],
    );
    let out = nbdsh(
        &[so.display().to_string(), "1G".into()],
        "print(h.get_size())\nprint(list(h.pread(4, 1000)))\nprint(h.is_read_only())",
    )
    .ok();
    let offsets: Vec<u64> = (1000..1004).collect();
    let expected: Vec<String> = offsets.iter().map(|o| (o % 251).to_string()).collect();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            &(1u64 << 30).to_string(),
            &format!("[{}]", expected.join(", ")),
            "True"
        ]
    );
}

#[test]
fn the_readme_filter_example_builds_and_flips_the_data() {
    let so = build_plugin(
        "readme_filter_example",
        &ApiCopy {
            version: "1.0.0",
            edits: &[],
        },
        &readme_source("## Writing a filter"),
        &[],
    );
    let args = rustshim_tests::filters::nbdkit_words(&[
        rustshim_tests::filters::rust_filter(),
        "memory".into(),
        "1M".into(),
        format!("filter={}", so.display()),
        "invert-mask=15".into(),
    ]);
    let script = "print(list(h.pread(2, 0)))\nh.pwrite(b'ab', 100)\nprint(h.pread(2, 100))\nh.zero(2, 100)\nprint(list(h.pread(2, 100)))";
    let out = rustshim_tests::filters::nbdsh_with(&args, script).ok();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["[15, 15]", "bytearray(b'ab')", "[0, 0]"]
    );
}
