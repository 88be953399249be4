//! `cargo xtask bench --quick` runs end to end: real nbdkit, the shim, fio, and a results table
//! with numbers in it. Nothing about the figures is asserted (the machine is shared and noisy);
//! `cargo xtask bench` (the full run) writes them to BENCHMARKS.md.

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
    eprintln!("cargo xtask bench --quick took {:?}", started.elapsed());
}
