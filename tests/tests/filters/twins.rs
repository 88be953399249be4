//! The example filters against their C twins, on whichever nbdkit the suite runs against
//! (`RUSTSHIM_ROOT`): the same data, the same errors as the client sees them, the same timing
//! bounds and the same `nbdinfo` lines, over a C plugin and over the rustshim plugin, and stacked
//! between C filters.

use rustshim_tests::filters::*;
use rustshim_tests::*;

/// The plugins each twin is compared over: nbdkit's C `memory` plugin, and the rustshim plugin
/// serving the Rust `memory` plugin (the shim file loaded as plugin and as filter).
fn plugins(size: &str) -> Vec<Vec<String>> {
    vec![
        vec!["memory".into(), size.into()],
        vec![
            shim().display().to_string(),
            format!("plugin={}", plugin("memory").display()),
            format!("size={size}"),
        ],
    ]
}

/// `[--filter=C] PLUGIN... [keys]` with the C filter, and `--filter=SHIM PLUGIN... filter=RUST
/// [keys]` with its Rust twin.
fn twins(c: &str, rust: &str, plugin: &[String], keys: &[&str]) -> [Vec<String>; 2] {
    let mut c_args = vec![format!("--filter={c}")];
    c_args.extend(plugin.iter().cloned());
    c_args.extend(keys.iter().map(|k| k.to_string()));
    let mut rust_args = vec![rust_filter()];
    rust_args.extend(plugin.iter().cloned());
    rust_args.push(filter_key(rust));
    rust_args.extend(keys.iter().map(|k| k.to_string()));
    [nbdkit_words(&c_args), nbdkit_words(&rust_args)]
}

#[test]
fn passthrough_is_as_invisible_as_nofilter() {
    for plugin in plugins("1M") {
        let none = info_lines(&nbdkit_words(&plugin));
        let [c, rust] = twins("nofilter", "passthrough", &plugin, &[]);
        assert_eq!(info_lines(&c), none, "nofilter over {plugin:?}");
        assert_eq!(info_lines(&rust), none, "passthrough over {plugin:?}");
        let script = "h.pwrite(b'rust' * 1024, 8192)\nprint(h.pread(4096, 8192) == b'rust' * 1024, h.get_size())";
        assert_eq!(nbdsh_with(&rust, script).ok().stdout.trim(), "True 1048576");
    }
}

#[test]
fn passthrough_from_installed_copies_of_the_shim() {
    // As `cargo xtask install` puts them: one file as the plugin, a copy as the filter.
    let dir = temp_dir("copies");
    let (plugin_shim, filter_shim) = (dir.join("plugin.so"), dir.join("filter.so"));
    std::fs::copy(shim(), &plugin_shim).unwrap();
    std::fs::copy(shim(), &filter_shim).unwrap();
    let args = nbdkit_words(&[
        format!("--filter={}", filter_shim.display()),
        plugin_shim.display().to_string(),
        format!("plugin={}", plugin("memory").display()),
        "size=1M".into(),
        filter_key("passthrough"),
    ]);
    let out = nbdsh_with(
        &args,
        "h.pwrite(b'x' * 512, 0)\nprint(h.pread(512, 0) == b'x' * 512)",
    );
    assert_eq!(out.ok().stdout.trim(), "True");
}

/// Seconds a Python snippet takes, as printed by the script.
const TIMED: &str = "import time\ndef timed(f):\n    t = time.monotonic()\n    try:\n        f()\n        r = 'ok'\n    except nbd.Error as e:\n        r = e.string.split(': ')[-1]\n    return '%.3f %s' % (time.monotonic() - t, r)\n";

fn timings(args: &[String], ops: &str) -> Vec<(f64, String)> {
    let out = nbdsh_with(args, &format!("{TIMED}{ops}")).ok();
    out.stdout
        .lines()
        .map(|l| {
            let (t, r) = l.split_once(' ').unwrap();
            (t.parse().unwrap(), r.to_string())
        })
        .collect()
}

#[test]
fn delay_waits_as_long_as_nbdkits_delay_filter() {
    let ops = "print(timed(lambda: h.pread(512, 0)))\nprint(timed(lambda: h.pwrite(b'x' * 512, 0)))\nprint(timed(lambda: h.zero(512, 0)))\nprint(timed(lambda: h.trim(512, 0)))";
    for plugin in plugins("1M") {
        let keys = ["delay-read=300ms", "delay-write=200ms", "wdelay=200ms"];
        let [c, rust] = twins("delay", "delay", &plugin, &keys);
        let (c, rust) = (timings(&c, ops), timings(&rust, ops));
        for (name, t) in [("C", &c), ("Rust", &rust)] {
            // Read 300 ms; write, zero and trim 200 ms (wdelay sets all three, after delay-write).
            for (i, min) in [0.3, 0.2, 0.2, 0.2].into_iter().enumerate() {
                assert!(
                    t[i].0 >= min && t[i].0 < min + 2.0,
                    "{name} over {plugin:?}: request {i} took {} s, expected {min} s",
                    t[i].0
                );
                assert_eq!(t[i].1, "ok");
            }
        }
    }
}

#[test]
fn delay_fast_zero_false_fails_fast_zero_at_once_as_nbdkits_does() {
    let ops = "print(timed(lambda: h.zero(512, 0, nbd.CMD_FLAG_FAST_ZERO)))\nprint(timed(lambda: h.zero(512, 0)))\nprint(h.can_fast_zero())";
    for plugin in plugins("1M") {
        let keys = ["delay-zero=500ms", "delay-fast-zero=false"];
        let [c, rust] = twins("delay", "delay", &plugin, &keys);
        let both = [
            nbdsh_with(&c, &format!("{TIMED}{ops}")).ok().stdout,
            nbdsh_with(&rust, &format!("{TIMED}{ops}")).ok().stdout,
        ];
        for out in &both {
            let lines: Vec<&str> = out.lines().collect();
            let fast: f64 = lines[0].split(' ').next().unwrap().parse().unwrap();
            assert!(fast < 0.4, "fast zero waited {fast} s: {out}");
            assert!(lines[0].ends_with("Operation not supported"), "{out}");
            let slow: f64 = lines[1].split(' ').next().unwrap().parse().unwrap();
            assert!(slow >= 0.5, "{out}");
            assert_eq!(lines[2], "True", "{out}");
        }
    }
}

/// Runs every kind of request once and prints what the client saw for each.
const EVERY_REQUEST: &str = "
def outcome(f):
    try:
        f()
        return 'ok'
    except nbd.Error as e:
        return e.string.split(': ')[-1]
for name, f in [
    ('pread', lambda: h.pread(512, 0)),
    ('pwrite', lambda: h.pwrite(b'x' * 512, 0)),
    ('trim', lambda: h.trim(512, 0)),
    ('zero', lambda: h.zero(512, 0)),
    ('cache', lambda: h.cache(512, 0)),
    ('extents', lambda: h.block_status(512, 0, lambda *a: 0)),
]:
    print(name, outcome(f))
";

#[test]
fn error_injects_the_same_errors_as_nbdkits_error_filter() {
    for plugin in plugins("1M") {
        for (op, error, seen) in [
            ("pread", "EIO", "Input/output error"),
            ("pwrite", "ENOSPC", "No space left on device"),
            ("trim", "EPERM", "Operation not permitted"),
            ("zero", "ENOMEM", "Cannot allocate memory"),
            ("cache", "EINVAL", "Invalid argument"),
            (
                "extents",
                "ESHUTDOWN",
                "Cannot send after transport endpoint shutdown",
            ),
        ] {
            let keys = [format!("error-{op}={error}"), format!("error-{op}-rate=1")];
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let [c, rust] = twins("error", "error", &plugin, &keys);
            let (c, rust) = (
                nbdsh_with(&c, EVERY_REQUEST).ok(),
                nbdsh_with(&rust, EVERY_REQUEST).ok(),
            );
            assert_eq!(rust.stdout, c.stdout, "error-{op}={error} over {plugin:?}");
            for line in rust.stdout.lines() {
                let expected = if line.starts_with(op) { seen } else { "ok" };
                assert!(line.ends_with(expected), "{line} ({op}): {}", rust.stdout);
            }
            let logged = format!("injecting {error} error into {op}");
            assert!(c.stderr.contains(&logged), "{}", c.stderr);
            assert!(rust.stderr.contains(&logged), "{}", rust.stderr);
        }
    }
}

#[test]
fn error_file_switches_errors_on_and_off_like_nbdkits() {
    let dir = temp_dir("error-file");
    let trigger = dir.join("inject");
    let script = format!(
        "import os\ndef read():\n    try:\n        h.pread(512, 0)\n        return 'ok'\n    except nbd.Error as e:\n        return e.string.split(': ')[-1]\nprint(read())\nopen({t:?}, 'w').close()\nprint(read())\nos.remove({t:?})\nprint(read())",
        t = trigger.display().to_string()
    );
    for plugin in plugins("1M") {
        let file = format!("error-file={}", trigger.display());
        let [c, rust] = twins("error", "error", &plugin, &["error-rate=100%", &file]);
        let (c, rust) = (
            nbdsh_with(&c, &script).ok(),
            nbdsh_with(&rust, &script).ok(),
        );
        assert_eq!(rust.stdout, c.stdout);
        assert_eq!(rust.stdout, "ok\nInput/output error\nok\n");
    }
}

#[test]
fn error_rejects_what_nbdkits_rejects() {
    for keys in [["error=EWHAT"], ["error-rate=150%"], ["error-pread-rate=x"]] {
        let [c, rust] = twins("error", "error", &plugins("1M")[0], &keys);
        let c = nbdkit_plain(&[&c[1..], &["--run".into(), "true".into()]].concat()).failed();
        let rust = nbdkit_plain(&[&rust[1..], &["--run".into(), "true".into()]].concat()).failed();
        let key = keys[0].split('=').next().unwrap();
        assert!(c.stderr.contains(key), "{}", c.stderr);
        assert!(rust.stderr.contains(key), "{}", rust.stderr);
    }
}

/// A disk file of `len` bytes of the pattern, for the swab tests.
fn disk(dir: &TempDir, len: usize) -> (std::path::PathBuf, Vec<u8>) {
    let data = pattern(7, len);
    let path = dir.join("disk.img");
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

#[test]
fn swab_swaps_data_both_ways_like_nbdkits_swab_filter() {
    let dir = temp_dir("swab");
    for bits in [16usize, 32, 64] {
        let (path, data) = disk(&dir, 8192 + 3);
        let file = vec!["file".to_string(), path.display().to_string()];
        let key = format!("swab-bits={bits}");
        let [c, rust] = twins("swab", "swab", &file, &[&key]);
        // Same size (rounded down to the word), same block size lines, same map.
        assert_eq!(info_lines(&rust), info_lines(&c), "swab-bits={bits}");
        let map = |a: &[String]| nbdinfo_with(&["--map"], a).ok().stdout;
        assert_eq!(map(&rust), map(&c));

        // Reads: the file's words, swapped.
        let read = "sys.stdout.write(h.pread(8192, 0).hex())";
        let seen = nbdsh_with(&rust, read).ok().stdout;
        assert_eq!(seen, nbdsh_with(&c, read).ok().stdout);
        let mut swapped = data[..8192].to_vec();
        swapped.chunks_exact_mut(bits / 8).for_each(|w| w.reverse());
        assert_eq!(
            seen,
            swapped
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );

        // Writes: swapped on the way down, so the C twin reads back what was written.
        let written = pattern(bits as u64, 4096);
        let write = format!("h.pwrite(bytes.fromhex({:?}), 4096)", hex(&written));
        nbdsh_with(&rust, &write).ok();
        let on_disk = std::fs::read(&path).unwrap();
        let mut expected = written.clone();
        expected
            .chunks_exact_mut(bits / 8)
            .for_each(|w| w.reverse());
        assert_eq!(&on_disk[4096..8192], &expected[..]);
        let back = nbdsh_with(&c, "sys.stdout.write(h.pread(4096, 4096).hex())").ok();
        assert_eq!(back.stdout, hex(&written));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn swab_refuses_unaligned_requests_as_nbdkits_does() {
    let script = "h.set_strict_mode(0)\ntry:\n    h.pread(3, 1)\n    print('ok')\nexcept nbd.Error as e:\n    print(e.string.split(': ')[-1])";
    for plugin in plugins("1M") {
        let [c, rust] = twins("swab", "swab", &plugin, &["swab-bits=32"]);
        let (c, rust) = (nbdsh_with(&c, script).ok(), nbdsh_with(&rust, script).ok());
        assert_eq!(rust.stdout, c.stdout);
        assert_eq!(rust.stdout.trim(), "Invalid argument");
        assert!(rust
            .stderr
            .contains("swab: requests to this filter must be aligned"));
    }
}

#[test]
fn between_c_filters_above_and_below() {
    // cow above (it keeps writes to itself), cache below: the Rust filter is in the middle.
    let plugin = plugins("1M").remove(0);
    let mut c_args = vec![
        "--filter=cow".to_string(),
        "--filter=swab".into(),
        "--filter=cache".into(),
    ];
    c_args.extend(plugin.iter().cloned());
    c_args.push("swab-bits=64".into());
    let mut rust_args = vec![
        "--filter=cow".to_string(),
        rust_filter(),
        "--filter=cache".into(),
    ];
    rust_args.extend(plugin.iter().cloned());
    rust_args.extend([filter_key("swab"), "swab-bits=64".into()]);
    let (c, rust) = (nbdkit_words(&c_args), nbdkit_words(&rust_args));
    assert_eq!(info_lines(&rust), info_lines(&c));
    let script = "h.pwrite(bytes(range(256)) * 16, 65536)\nh.flush()\nsys.stdout.write(h.pread(8192, 61440).hex())";
    assert_eq!(
        nbdsh_with(&rust, script).ok().stdout,
        nbdsh_with(&c, script).ok().stdout
    );
    let map = |a: &[String]| nbdinfo_with(&["--map"], a).ok().stdout;
    assert_eq!(map(&rust), map(&c));
}

#[test]
fn each_twin_reports_the_version_it_runs_on() {
    // One build for every nbdkit: the shim learnt the running version and registered with it.
    let out = nbdkit_plain(&[
        rust_filter(),
        "memory".into(),
        "1M".into(),
        filter_key("passthrough"),
        "--version".into(),
    ])
    .ok();
    assert!(
        out.stdout
            .contains(&format!("rustshim {}", nbdkit_version())),
        "{}",
        out.stdout
    );
}
