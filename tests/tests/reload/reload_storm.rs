//! A reload storm: many new builds in a row. What old generations and refused builds keep is
//! bounded as the README says: nothing on disk, and in memory only each loaded build's loadable
//! segments (not its debug information, most of a debug build), nothing for a refused one.

use std::time::Duration;

use rustshim_tests::*;

/// The kernel's accounting of the mappings of copies of the plugin: (distinct copies, KiB of
/// address space, KiB resident).
fn mapped(pid: u32) -> (usize, u64, u64) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let (mut names, mut size, mut rss, mut ours) = (Vec::new(), 0, 0, false);
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            ours = fields.get(5).is_some_and(|n| n.contains("rustshim-gen"));
            if ours {
                names.push(fields[5].to_string());
            }
        } else if ours && fields[0] == "Size:" {
            size += fields[1].parse::<u64>().unwrap();
        } else if ours && fields[0] == "Rss:" {
            rss += fields[1].parse::<u64>().unwrap();
        }
    }
    names.sort();
    names.dedup();
    (names.len(), size, rss)
}

#[test]
fn a_reload_storm_keeps_only_the_loaded_segments_and_nothing_on_disk() {
    let dir = temp_dir("storm");
    let watched = dir.join("libmemory.so");
    install_build(&plugin("memory"), &watched, Install::RenameOver);
    let file_kib = std::fs::metadata(&watched).unwrap().len() / 1024;
    let builds: Vec<_> = (0..2)
        .map(|n| rebuilt(&plugin("memory"), &dir, &n.to_string()))
        .collect();
    let broken = dir.join("broken.so");
    std::fs::write(
        &broken,
        &std::fs::read(plugin("memory")).unwrap()[..100_000],
    )
    .unwrap();
    let server = serve(
        &[],
        &[
            format!("plugin={}", watched.display()),
            "reload=watch".into(),
            "size=64M".into(),
        ],
    );
    let (_, one_size, _) = mapped(server.pid());
    let swaps = 30;
    for n in 0..swaps {
        install_build(&builds[n % 2], &watched, Install::RenameOver);
        server
            .wait_for_log(&format!("generation {} from", n + 2), 1)
            .unwrap_or_else(|e| panic!("{e}"));
        // A refused build in between: it must keep nothing.
        install_build(&broken, &watched, Install::RenameOver);
        server
            .wait_for_log("truncated", n + 1)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (copies, size, rss) = mapped(server.pid());
    eprintln!(
        "{swaps} swaps of a {file_kib} KiB build: {copies} copies mapped, {size} KiB of address space ({one_size} KiB for one), {rss} KiB resident"
    );
    assert_eq!(copies, swaps + 1, "one mapped copy per loaded build");
    assert!(
        size <= (swaps as u64 + 1) * one_size,
        "each copy maps no more than the first one: {size} KiB"
    );
    assert!(
        one_size < file_kib / 2,
        "debug information is not kept: {one_size} KiB of a {file_kib} KiB file"
    );
    let left: Vec<String> = std::fs::read_dir(server.tmpdir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, Vec::<String>::new(), "nothing in TMPDIR");
}
