//! A hot reload between builds of the memory plugin whose page stores have different layout
//! versions (`abi::PAGES_LAYOUT_VERSION`): the new build does not adopt the old store (it
//! starts with an empty disk, and says so), the old build keeps serving its open connection
//! with its data, and nothing crashes. Here the old build is the memory plugin built against a
//! copy of `plugin-api` that labels its stores with the previous version.

use rustshim_tests::fixtures::{build_plugin, ApiCopy};
use rustshim_tests::*;

#[test]
fn a_store_of_another_layout_version_is_not_taken_over() {
    let version = "pub const PAGES_LAYOUT_VERSION: u32 = ";
    let abi = std::fs::read_to_string(workspace().join("plugin-api/src/abi/mod.rs")).unwrap();
    let current: u32 = abi[abi.find(version).unwrap() + version.len()..]
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let current_line = format!("{version}{current};");
    let previous_line = format!("{version}{};", current - 1);
    let old = build_plugin(
        "memory_previous_layout",
        &ApiCopy {
            version: API_VERSION,
            edits: &[("src/abi/mod.rs", &current_line, &previous_line)],
        },
        include_str!("../../../plugins/memory/src/lib.rs"),
        &[],
    );
    let dir = temp_dir("memory-layout");
    let watched = dir.join("libmemory.so");
    install_build(&old, &watched, Install::RenameOver);
    let server = serve(
        &[],
        &[
            format!("plugin={}", watched.display()),
            "reload=watch".into(),
            "size=1M".into(),
        ],
    );
    let script = format!(
        r#"
def wait_for(text):
    while text not in open({log:?}).read():
        time.sleep(0.01)
import shutil
h1 = nbd.NBD()
h1.connect_unix(SOCKET)
h1.pwrite(b"old" * 1000, 0)
shutil.copy({new:?}, {watched:?} + ".tmp"); os.rename({watched:?} + ".tmp", {watched:?})
wait_for("generation 2 from")
h2 = nbd.NBD()
h2.connect_unix(SOCKET)
print(h2.pread(3000, 0) == bytes(3000), h1.pread(3000, 0) == b"old" * 1000)
h2.pwrite(b"new" * 1000, 0)
print(h1.pread(3000, 0) == b"old" * 1000, h2.pread(3000, 0) == b"new" * 1000)
"#,
        log = server.log_path().display().to_string(),
        new = plugin("memory").display().to_string(),
        watched = watched.display().to_string(),
    );
    let out = server.client(&script).ok();
    assert_eq!(
        out.stdout.trim(),
        "True True\nTrue True",
        "{}",
        server.log()
    );
    let line = server.wait_for_log("generation 2 from", 1).unwrap();
    assert!(
        line.contains("starts with fresh state: it did not take state 'rustshim-memory-disk'"),
        "{line}"
    );
}
