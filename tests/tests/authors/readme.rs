//! The plugin and filter examples of README.md and of docs/writing-plugins.md and
//! docs/writing-filters.md, each built out of tree exactly as written and served through the
//! shim: the docs cannot drift from the API.

use rustshim_tests::fixtures::{build_plugin, ApiCopy};
use rustshim_tests::*;

/// The first ```rust example after `section` in `doc` (relative to the workspace).
fn example(doc: &str, section: &str) -> String {
    let text = std::fs::read_to_string(workspace().join(doc)).unwrap();
    let from = text
        .find(section)
        .unwrap_or_else(|| panic!("{doc} has the section {section:?}"));
    let start = from
        + text[from..]
            .find("```rust\n")
            .unwrap_or_else(|| panic!("{doc}'s {section:?} has a rust example"))
        + "```rust\n".len();
    let len = text[start..].find("```").unwrap();
    text[start..start + len].to_string()
}

/// Builds the plugin example and reads its pattern through a real client.
fn builds_and_serves_its_pattern(name: &str, source: &str) {
    let so = build_plugin(
        name,
        &ApiCopy {
            version: API_VERSION,
            edits: &[],
        },
        source,
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

/// Builds the filter example and serves a memory disk through it with `invert-mask=15`.
fn builds_and_flips_the_data(name: &str, source: &str) {
    let so = build_plugin(
        name,
        &ApiCopy {
            version: "1.0.0",
            edits: &[],
        },
        source,
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

#[test]
fn the_readme_example_builds_and_serves_its_pattern() {
    builds_and_serves_its_pattern("readme_example", &example("README.md", "## A plugin"));
}

#[test]
fn the_readme_filter_example_builds_and_flips_the_data() {
    builds_and_flips_the_data(
        "readme_filter_example",
        &example("README.md", "## A filter"),
    );
}

#[test]
fn the_plugin_guide_example_builds_and_serves_its_pattern() {
    let source = example("docs/writing-plugins.md", "By hand, a plugin");
    builds_and_serves_its_pattern("guide_example", &source);
}

#[test]
fn the_filter_guide_example_builds_and_flips_the_data() {
    let source = example("docs/writing-filters.md", "# Writing a filter");
    builds_and_flips_the_data("guide_filter_example", &source);
}
