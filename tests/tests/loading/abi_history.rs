//! The ABI against its own history: the shim and plugins of the commits that were
//! `rustshim-plugin-api` 1.0.0 and 1.1.0 (see `rustshim_tests::history`), each built from
//! `git archive` of that commit, with today's.
//!
//! * The ABI is only appended to: the `memory` plugins of 1.0.0 and 1.1.0 load into today's shim
//!   and serve reads, writes, zeroes, trims and flushes to a real client, exactly as they did.
//!   Any field of either table moved, retyped or inserted before the end breaks this.
//! * A plugin of today calling a host service that the 1.0.0 shim does not have gets `ENOTSUP`
//!   naming the function and saying the shim predates it: the plugin reads the length of the
//!   shim's table (abi_stable's prefix type records how many fields the shim built it with) and
//!   never calls past its end.

use std::path::Path;

use rustshim_tests::fixtures::{build_plugin, SAME_API};
use rustshim_tests::history::{release, API_1_0_0, API_1_1_0};
use rustshim_tests::*;

/// `nbdkit -s SHIM plugin=PLUGIN ARGS` under a Python client running `script` on the connected
/// handle `h`.
fn client(shim: &Path, plugin: &Path, args: &[&str], script: &str) -> Run {
    let nbdkit = ServerBuilder::new()
        .shim(shim)
        .nbdkit_args(["-s", "--exit-with-parent"])
        .arg(format!("plugin={}", plugin.display()))
        .args(args);
    let argv = argv(&nbdkit);
    python(&format!(
        "h = nbd.NBD()\nh.connect_command({argv:?})\n{script}\n"
    ))
}

/// `--dump-plugin` of PLUGIN on SHIM.
fn dump(shim: &Path, plugin: &Path) -> String {
    run_nbdkit(
        shim_nbdkit()
            .shim(shim)
            .arg(format!("plugin={}", plugin.display()))
            .arg("--dump-plugin"),
    )
    .ok()
    .stdout
}

/// What a client does with a 1 MiB `memory` disk, and what it must print: the size, a write
/// read back, a zeroed range, a trimmed range, the flags nbdkit negotiated for the plugin.
const MEMORY_SESSION: &str = r#"
print(h.get_size())
data = bytes((i * 7 + 3) % 251 for i in range(65536))
h.pwrite(data, 4096)
print(h.pread(65536, 4096) == data)
h.zero(4096, 8192)
print(h.pread(4096, 8192) == bytes(4096), h.pread(4096, 4096) == data[:4096])
h.trim(4096, 16384)
print(h.pread(4096, 16384) == bytes(4096))
h.flush()
print(h.can_zero(), h.can_trim(), h.can_flush(), h.can_multi_conn())
"#;
const MEMORY_SESSION_PRINTS: [&str; 5] = [
    "1048576",
    "True",
    "True True",
    "True",
    "True True True True",
];

/// Asserts that the `memory` plugin of `commit`, built against `rustshim-plugin-api` `version`,
/// loads into today's shim, says which API it was built against, and serves a real client.
fn old_memory_plugin_serves_on_todays_shim(commit: &str, version: &str) {
    let old = release(commit).plugin("memory");
    let dumped = dump(&shim(), &old);
    assert!(
        dumped
            .lines()
            .any(|l| l == format!("rustshim_plugin_api_version={version}")),
        "{dumped}"
    );
    assert!(
        dumped
            .lines()
            .any(|l| l == format!("rustshim_api_version={API_VERSION}")),
        "{dumped}"
    );
    let out = client(&shim(), &old, &["size=1M"], MEMORY_SESSION).ok();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        MEMORY_SESSION_PRINTS,
        "{}",
        out.stderr
    );
    // The same session through that commit's own shim, for the record: what the plugin did
    // then is what it does now.
    let then = client(&release(commit).shim, &old, &["size=1M"], MEMORY_SESSION).ok();
    assert_eq!(then.stdout, out.stdout);
}

#[test]
fn a_plugin_built_against_plugin_api_1_0_0_serves_on_todays_shim() {
    old_memory_plugin_serves_on_todays_shim(API_1_0_0, "1.0.0");
}

#[test]
fn a_plugin_built_against_plugin_api_1_1_0_serves_on_todays_shim() {
    old_memory_plugin_serves_on_todays_shim(API_1_1_0, "1.1.0");
}

/// A plugin of today's API whose `pread` logs what it read with `server::debug_hexdump` (added
/// in 1.1.0) and fails the read with that call's error, its errno number written in front of
/// the message (the client cannot see it: nbdkit answers a read's `ENOTSUP` with `EINVAL`).
const HEXDUMP_PLUGIN: &str = r#"
use rustshim_plugin_api::prelude::*;
#[derive(Default)]
struct Dumper;
#[plugin]
impl Plugin for Dumper {
    type Handle = ();
    const NAME: &'static str = "dumper";
    fn open(&self, _readonly: bool) -> Result<()> { Ok(()) }
    fn get_size(&self, _: &()) -> Result<u64> { Ok(1 << 20) }
    fn pread(&self, _: &(), buf: &mut [u8], offset: u64, _flags: Flags) -> Result<()> {
        buf.fill(0x5a);
        server::debug_hexdump(&buf[..16], "dumper: ", offset)
            .map_err(|e| Error::new(e.errno(), format!("errno {}: {}", e.errno() as i32, e.message())))
    }
}
export_plugin!(Dumper);
"#;

#[test]
fn a_newer_plugin_calling_a_service_the_older_shim_lacks_gets_enotsup_saying_it_predates_it() {
    let plugin = build_plugin("hexdump_user", &SAME_API, HEXDUMP_PLUGIN, &[]);
    let read = "try:\n    print(h.pread(16, 512).hex())\nexcept nbd.Error as e:\n    print('error', e.errno, e.string)";

    // The 1.0.0 shim loads it (it implements nothing that shim lacks), but has no hexdump: the
    // plugin gets ENOTSUP and says why; the client's read fails (nbdkit sends a read's ENOTSUP
    // as EINVAL).
    let old = release(API_1_0_0);
    let out = client(&old.shim, &plugin, &[], read).ok();
    let said = out.stdout.trim();
    assert!(
        said.starts_with("error EINVAL "),
        "the read should fail: {said}\n{}",
        out.stderr
    );
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("nbdkit_debug_hexdump"))
        .unwrap_or_else(|| panic!("no line names the function:\n{}", out.stderr));
    assert!(
        line.contains(&format!(
            "errno {}: nbdkit_debug_hexdump is not supported by this rustshim (it predates \
             rustshim-plugin-api 1.1)",
            nix::errno::Errno::ENOTSUP as i32
        )),
        "{line}"
    );
    assert_eq!(
        out.stderr.lines().filter(|l| l.contains("error")).count(),
        1,
        "one line:\n{}",
        out.stderr
    );

    // Today's shim has it: the same read succeeds and the dump is logged (with -v).
    let out = client(&shim(), &plugin, &[], read).ok();
    assert_eq!(out.stdout.trim(), "5a".repeat(16), "{}", out.stderr);
    let nbdkit = shim_nbdkit()
        .nbdkit_args(["-U", "-", "-v"])
        .arg(format!("plugin={}", plugin.display()))
        .args(["--run", "nbdsh -u \"$uri\" -c 'h.pread(16, 512)'"]);
    let out = run_nbdkit(nbdkit).ok();
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("dumper: ") && l.contains("00000200") && l.contains("5a 5a 5a 5a")),
        "{}",
        out.stderr
    );
}
