//! `cargo xtask bench --quick` runs end to end: real nbdkit, the shim, fio, and a results table
//! with numbers in it, and the load times of nbdkit's C null and of two plugins through the
//! shim. Nothing about the figures is asserted (the machine is shared and noisy); `cargo xtask
//! bench` (the full run) writes them to BENCHMARKS.md.

use std::process::Command;
use std::time::Instant;

use rustshim_tests::workspace;

#[test]
fn quick_bench_prints_a_table_with_numbers() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO"))
        .args(["run", "--quiet", "-p", "xtask", "--", "bench", "--quick"])
        .current_dir(workspace())
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cargo xtask bench --quick failed ({}):\n{stdout}\n{stderr}",
        out.status
    );

    // The table's header, then at least one row whose cells hold figures.
    let header = stdout
        .lines()
        .position(|l| l.starts_with("| rustshim vs | workload | rustshim IOPS"))
        .unwrap_or_else(|| panic!("no results table in the output:\n{stdout}"));
    let rows: Vec<&str> = stdout
        .lines()
        .skip(header + 2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(!rows.is_empty(), "the table has no rows:\n{stdout}");
    for row in rows {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        // rustshim IOPS, other IOPS and the IOPS ratio each start with a number.
        for cell in &cells[2..5] {
            let first = cell.trim_start_matches('*');
            assert!(
                first.starts_with(|c: char| c.is_ascii_digit()),
                "not a number: {cell:?} in {row:?}"
            );
        }
    }

    // The load times: one row per server, each with its time in ms and the command that was
    // timed among the commands under the table.
    let load = stdout
        .find("## Load time\n")
        .map(|at| &stdout[at..])
        .unwrap_or_else(|| panic!("no load time section in the output:\n{stdout}"));
    let stamp = load.lines().nth(2).unwrap_or_default();
    assert!(
        stamp.starts_with("*Written by `cargo xtask bench --quick` (this section alone: `cargo xtask bench --load`) at commit `")
            && stamp.contains(" on 20"),
        "the section does not say what wrote it:\n{load}"
    );
    let header = load
        .lines()
        .position(|l| l.starts_with("| server | plugin file | ms |"))
        .unwrap_or_else(|| panic!("no load time table:\n{load}"));
    let rows: Vec<&str> = load
        .lines()
        .skip(header + 2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    let servers: Vec<&str> = rows
        .iter()
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            let ms = cells[2].trim_start_matches('*');
            let figure: f64 = ms
                .split('*')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a time in ms: {:?} in {row:?}", cells[2]));
            assert!(figure > 0.0, "{row}");
            cells[0]
        })
        .collect();
    assert_eq!(
        servers,
        [
            "C null",
            "rustshim null, debug build",
            "rustshim memory, debug build"
        ],
        "{load}"
    );
    for command in [
        "nbdkit null size=1M --run true",
        "target/debug/libnbdkit_rustshim_plugin.so plugin=target/debug/librustshim_null.so size=1M --run true",
        "target/debug/libnbdkit_rustshim_plugin.so plugin=target/debug/librustshim_memory.so size=1M --run true",
    ] {
        assert!(load.contains(command), "{command:?} is not among the commands:\n{load}");
    }
    eprintln!("cargo xtask bench --quick took {:?}", started.elapsed());
}
