//! The README's plugin author quick start, built as an out-of-tree plugin exactly as written and
//! served through the shim: the docs cannot drift from the API.

use rustshim_tests::fixtures::{build_plugin, ApiCopy};
use rustshim_tests::*;

fn readme_plugin_source() -> String {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let start = readme.find("```rust\n").expect("README has a rust example") + "```rust\n".len();
    let len = readme[start..].find("```").unwrap();
    readme[start..start + len].to_string()
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
