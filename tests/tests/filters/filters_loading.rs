//! Loading a Rust filter: every bad input gets one line naming the file (or key) and the cause,
//! and nbdkit exits non-zero without a signal; short names are found.

use std::os::unix::fs::PermissionsExt;

use rustshim_tests::filters::*;
use rustshim_tests::fixtures::{build_plugin, ApiCopy};
use rustshim_tests::*;

/// Runs `nbdkit --filter=SHIM memory 1M KEYS... --run true` and expects a refusal: exit status
/// 1 and exactly one error line, containing every one of `needles` ([`one_refusal`]).
#[track_caller]
fn refused(keys: &[String], needles: &[&str]) -> String {
    let mut args = vec![rust_filter(), "memory".into(), "1M".into()];
    args.extend(keys.iter().cloned());
    args.extend(["--run".into(), "true".into()]);
    one_refusal(&nbdkit_plain(&args), needles)
}

fn key(path: impl std::fmt::Display) -> String {
    format!("filter={path}")
}

#[test]
fn no_filter_given() {
    refused(&[], &["no filter given", "filter=PATH"]);
}

#[test]
fn missing_text_and_directory_files() {
    let dir = temp_dir("bad-files");
    refused(
        &[key("/nonexistent/libnope.so")],
        &["filter file '/nonexistent/libnope.so' does not exist"],
    );
    refused(
        &[key(dir.path().display())],
        &["is a directory, not a filter"],
    );
    let text = dir.join("notes.so");
    std::fs::write(&text, "not a filter\n").unwrap();
    refused(&[key(text.display())], &["notes.so", "not a shared object"]);
    let good = std::fs::read(filter("passthrough")).unwrap();
    let truncated = dir.join("truncated.so");
    std::fs::write(&truncated, &good[..200_000]).unwrap();
    refused(
        &[key(truncated.display())],
        &["truncated.so", "is truncated"],
    );
}

#[test]
fn c_filters_and_plugins_are_named_for_what_they_are() {
    let dir = nbdkit_plain(&["--dump-config"]).ok().stdout;
    let config = |name: &str| {
        dir.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_string()
    };
    let c_filter = format!("{}/nbdkit-delay-filter.so", config("filterdir"));
    refused(
        &[key(&c_filter)],
        &[
            "is a C nbdkit filter, not a Rust rustshim filter",
            &format!("nbdkit --filter={c_filter}"),
        ],
    );
    let c_plugin = format!("{}/nbdkit-memory-plugin.so", config("plugindir"));
    refused(
        &[key(&c_plugin)],
        &["is a C nbdkit plugin, not a Rust rustshim filter"],
    );
    refused(&[key(shim().display())], &["is the rustshim shim itself"]);
}

#[test]
fn a_rust_plugin_given_as_a_filter_and_the_reverse() {
    refused(
        &[key(plugin("memory").display())],
        &[
            "is a rustshim plugin, not a filter",
            "nbdkit rustshim plugin=FILE",
        ],
    );
    let out = nbdkit(&[
        format!("plugin={}", filter("delay").display()),
        "--run".into(),
        "true".into(),
    ])
    .failed();
    assert!(
        out.stderr.contains(
            "is a rustshim filter, not a plugin: use it with nbdkit --filter=rustshim filter=FILE"
        ),
        "{}",
        out.stderr
    );
}

const FIXTURE_FILTER: &str = r#"
use rustshim_plugin_api::prelude::*;
#[derive(Default)]
struct Fixture;
#[filter]
impl Filter for Fixture {
    type Handle = ();
    const NAME: &'static str = "fixture";
}
export_filter!(Fixture);
"#;

#[test]
fn another_major_abi_is_refused_naming_both_versions() {
    let api = ApiCopy {
        version: "2.0.0",
        edits: &[],
    };
    let built = build_plugin("filter_abi_v2", &api, FIXTURE_FILTER, &[]);
    refused(
        &[key(built.display())],
        &[
            &format!(
                "was built against rustshim-plugin-api 2.0.0, but this shim speaks 1.x ({API_VERSION})"
            ),
            "rebuild the filter",
        ],
    );
}

#[test]
fn a_filter_others_could_change_is_refused_unless_allowed() {
    let dir = temp_dir("perm");
    let open = dir.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let copy = open.join("libpassthrough.so");
    std::fs::copy(filter("passthrough"), &copy).unwrap();
    refused(
        &[key(copy.display())],
        &[
            "refused",
            "writable by group or others",
            "allow-insecure-filter=true",
        ],
    );
    let args = [
        rust_filter(),
        "memory".into(),
        "1M".into(),
        key(copy.display()),
        "allow-insecure-filter=true".into(),
        "--run".into(),
        "true".into(),
    ];
    nbdkit_plain(&args).ok();
}

#[test]
fn short_names_are_found_on_the_filter_path() {
    let dir = shim().parent().unwrap().display().to_string();
    let args = nbdkit_words(&[
        rust_filter(),
        "memory".into(),
        "1M".into(),
        "filter=delay".into(),
        "delay-read=1ms".into(),
    ]);
    let out = run(command("/usr/bin/python3")
        .env("RUSTSHIM_FILTER_PATH", &dir)
        .arg("-c")
        .arg(format!(
            "import nbd\nh = nbd.NBD()\nh.connect_command({:?})\nprint(len(h.pread(512, 0)))",
            [&args[..1], &["-s".to_string()], &args[1..]].concat()
        )));
    assert_eq!(out.ok().stdout.trim(), "512");
    refused(
        &["filter=nosuch".into()],
        &[
            "no filter named 'nosuch'",
            "librustshim_filter_nosuch.so",
            "RUSTSHIM_FILTER_PATH",
        ],
    );
}

#[test]
fn the_shims_own_keys_are_checked() {
    let passthrough = key(filter("passthrough").display());
    refused(
        &[passthrough.clone(), "filter-reload=maybe".into()],
        &["filter-reload=maybe: expected filter-reload=watch or filter-reload=off"],
    );
    refused(
        &[passthrough, "allow-insecure-filter=perhaps".into()],
        &["allow-insecure-filter=perhaps: expected true or false"],
    );
}

#[test]
fn a_filter_whose_config_refuses_a_key_stops_nbdkit_with_its_message() {
    let swab = key(filter("swab").display());
    refused(
        &[swab, "swab-bits=12".into()],
        &["invalid swab-bits, must be 8, 16, 32 or 64"],
    );
}

/// A filter whose dynamic section says its relocation entries have another size (one changed
/// value, as a damaged file would have): glibc's loader asserts and exits on it inside `dlopen`.
fn with_wrong_relaent(mut elf: Vec<u8>) -> Vec<u8> {
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]) as usize;
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let (phoff, phnum) = (u64_at(&elf, 0x20) as usize, u16_at(&elf, 0x38));
    const PT_DYNAMIC: u32 = 2;
    const DT_RELAENT: u64 = 9;
    let mut changed = false;
    for i in 0..phnum {
        let entry = phoff + 56 * i;
        if u32::from_le_bytes(elf[entry..entry + 4].try_into().unwrap()) != PT_DYNAMIC {
            continue;
        }
        let (offset, size) = (u64_at(&elf, entry + 8) as usize, u64_at(&elf, entry + 0x20));
        for at in (offset..offset + size as usize).step_by(16) {
            if u64_at(&elf, at) == DT_RELAENT {
                elf[at + 8..at + 16].copy_from_slice(&32u64.to_le_bytes());
                changed = true;
            }
        }
    }
    assert!(changed, "the filter has a DT_RELAENT entry");
    elf
}

/// The trial load in a throwaway process covers filters too: a file the dynamic linker gives up
/// on is refused with one line, and nbdkit's own process never maps it.
#[test]
fn a_damaged_filter_is_refused_by_its_trial_load() {
    let dir = temp_dir("damaged-filter");
    let damaged = dir.join("libdamaged.so");
    let good = std::fs::read(filter("passthrough")).unwrap();
    std::fs::write(&damaged, with_wrong_relaent(good)).unwrap();
    refused(
        &[key(damaged.display())],
        &[
            "filter file",
            "is damaged",
            "in a trial process",
            "libdamaged.so",
        ],
    );
}

#[test]
fn a_bad_value_for_the_filter_or_the_layer_below_is_one_line() {
    // The filter's own server function (`parse_delay`) says why: the shim adds nothing.
    refused(
        &[filter_key("delay"), "delay-read=bogus".into()],
        &["delay-read", "bogus"],
    );
    // Passed on to nbdkit's memory plugin, which says why.
    refused(
        &[filter_key("passthrough"), "allocator=bogus".into()],
        &["bogus"],
    );
}
