//! The null plugin through the shim: size from the magic key, zeroes read back, writes accepted
//! and discarded, the whole disk reported as a hole.

use rustshim_tests::*;

#[test]
fn bare_arguments_are_plugin_path_then_magic_key() {
    let null = plugin("null");
    let out = nbdinfo(&["--size"], &[null.to_str().unwrap(), "3M"]).ok();
    assert_eq!(out.stdout.trim(), (3 << 20).to_string());
}

#[test]
fn reads_zeroes_and_discards_writes() {
    let null = plugin("null");
    let out = nbdsh(
        &[format!("plugin={}", null.display()), "size=1M".into()],
        "h.pwrite(b'\\xff' * 4096, 8192)\n\
         assert h.pread(4096, 8192) == bytes(4096)\n\
         h.zero(4096, 0); h.trim(4096, 0); h.flush(); h.cache(4096, 0)\n\
         print(h.get_size(), h.can_multi_conn(), h.can_fua())",
    )
    .ok();
    assert_eq!(out.stdout.trim(), "1048576 True True");
}

#[test]
fn the_whole_disk_is_a_hole() {
    let null = plugin("null");
    let out = nbdinfo(&["--map"], &[null.to_str().unwrap(), "1M"]).ok();
    let fields: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(fields[..3], ["0", "1048576", "3"], "{}", out.stdout);
}
