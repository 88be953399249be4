//! A plugin that answers nonsense is contained: the shim clips what it can and refuses the rest
//! with a line naming the plugin, so nbdkit never sees invalid data and keeps serving.

use rustshim_tests::*;

fn args(extra: &[&str]) -> Vec<String> {
    let mut args = vec![test_plugin(), "size=1M".to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `nbdinfo --map` of the test plugin in an extents mode: the map lines.
fn map(mode: &str) -> Run {
    nbdinfo(&["--map"], &args(&[&format!("extents_mode={mode}")]))
}

fn map_lines(out: &Run) -> Vec<Vec<String>> {
    out.stdout
        .lines()
        .map(|l| l.split_whitespace().take(3).map(String::from).collect())
        .collect()
}

#[test]
fn overlapping_extents_are_clipped() {
    // The plugin says: data [0,1024), hole [512,1536), data [0,1M). The shim passes on the
    // parts not yet covered, in order.
    let out = map("overlap").ok();
    assert_eq!(
        map_lines(&out),
        [
            ["0", "1024", "0"],
            ["1024", "512", "3"],
            ["1536", "1047040", "0"]
        ],
        "{}",
        out.stdout
    );
}

#[test]
fn zero_length_extents_are_dropped() {
    let out = map("zero_length").ok();
    assert_eq!(map_lines(&out), [["0", "1048576", "3"]], "{}", out.stdout);
}

#[test]
fn an_extent_beyond_the_request_is_clipped_to_it() {
    // Starting before the request and ending far past the disk (nbdkit < 1.44 can assert on
    // such an extent: CVE-2025-47711).
    let out = map("beyond").ok();
    assert_eq!(map_lines(&out), [["0", "1048576", "0"]], "{}", out.stdout);
}

#[test]
fn unsorted_extents_are_refused_and_the_server_goes_on() {
    let server = serve(&[], &args(&["extents_mode=unsorted"]));
    let out = run(command("nbdinfo").arg("--map").arg(server.uri())).failed();
    assert!(
        out.stderr.contains("block-status") || out.stderr.contains("block_status"),
        "{}",
        out.stderr
    );
    assert!(
        server.log().contains(
            "extents: the plugin left a gap: extent at 1024 but the previous one ended at 0"
        ),
        "{}",
        server.log()
    );
    let out = server
        .client("h.connect_unix(SOCKET)\nprint(h.pread(4, 0).hex())")
        .ok();
    assert_eq!(out.stdout.trim(), "00000000");
}

#[test]
fn block_sizes_nbdkit_would_reject_are_refused_naming_the_plugin() {
    for (triple, why) in [
        (
            "3:4096:4096",
            "the minimum must be a power of 2 from 1 to 64K",
        ),
        (
            "131072:131072:131072",
            "the minimum must be a power of 2 from 1 to 64K",
        ),
        (
            "512:256:4096",
            "the preferred size must be a power of 2 from 512 to 32M",
        ),
        (
            "512:4096:1000",
            "the maximum must be a multiple of the minimum",
        ),
        (
            "4096:512:4294967295",
            "they must be ordered minimum <= preferred <= maximum",
        ),
        (
            "8192:4096:65536",
            "they must be ordered minimum <= preferred <= maximum",
        ),
    ] {
        // `--size`: nbdinfo 1.22 (Debian 13; not Debian 12's 1.14) reports an export it cannot
        // open as "unavailable" with `--json` and exits 0; with `--size` it fails on every version.
        let out = nbdinfo(&["--size"], &args(&[&format!("block_size={triple}")])).failed();
        let (min, rest) = triple.split_once(':').unwrap();
        let (pref, max) = rest.split_once(':').unwrap();
        let want = format!(
            "rustshim: plugin 'test': block_size returned minimum {min} preferred {pref} maximum {max}: {why}"
        );
        assert!(out.stderr.contains(&want), "{triple}: {}", out.stderr);
    }
    let out = nbdinfo(&["--json"], &args(&["block_size=512:4096:4294967295"])).ok();
    assert!(
        out.stdout.contains("\"block_size_minimum\": 512")
            && out.stdout.contains("\"block_size_preferred\": 4096"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_description_longer_than_nbd_allows_is_cut_to_the_limit() {
    let long = "€".repeat(2000); // 6000 bytes of 3-byte characters: 4096 is inside one
    let out = nbdinfo(&["--json"], &args(&[&format!("description={long}")])).ok();
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("\"description\""))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    let shown = line.split('"').nth(3).unwrap();
    assert_eq!(
        shown,
        "€".repeat(1365),
        "cut at 4095 bytes, the last whole character within 4096"
    );
}

#[test]
fn a_default_export_name_nbd_cannot_carry_is_refused() {
    for (name, why) in [
        ("x".repeat(5000), "longer than NBD allows"),
        ("a\\0b".to_string(), "NUL byte"),
    ] {
        let out = nbdinfo(&["--size"], &args(&[&format!("default_export={name}")])).failed();
        assert!(out.stderr.contains(why), "{}", out.stderr);
    }
}

#[test]
fn a_size_nbdkit_cannot_hold_is_refused() {
    let out = nbdinfo(&["--size"], &args(&["size_raw=18446744073709551615"])).failed();
    assert!(
        out.stderr.contains("rustshim: plugin 'test': get_size returned 18446744073709551615, larger than nbdkit allows (9223372036854775807)"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_unknown_shim_key_is_refused() {
    let out = nbdkit(&[
        test_plugin(),
        "rustshim-relaod=watch".into(),
        "--run".into(),
        "true".into(),
    ])
    .failed();
    assert!(
        out.stderr.contains("unknown shim key 'rustshim-relaod'"),
        "{}",
        out.stderr
    );
}
