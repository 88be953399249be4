//! Reloads stop near nbdkit's file descriptor limit (`ulimit -n`) with the line the README
//! promises ("Reloads stop, with a line saying to restart nbdkit, after about as many loads as
//! nbdkit's file descriptor limit"), and the server goes on serving the last generation it
//! took.

use rustshim_tests::*;

/// The descriptor limit nbdkit runs with here (soft and hard), set by `prlimit` around it.
const NOFILE: usize = 32;

#[test]
fn reloads_stop_near_the_descriptor_limit_with_one_line_and_the_last_generation_serves() {
    let server = Server::builder(plugin("test"))
        .shim(shim())
        .timeout(TIMEOUT)
        .prefix(["prlimit".to_string(), format!("--nofile={NOFILE}:{NOFILE}")])
        .reloadable()
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    // The test plugin keeps its data in memory and a new generation starts without it: what a
    // new connection reads tells generations apart. Each generation gets a mark of its own.
    let mark = |generation: usize| {
        server
            .client(&format!(
                "h.connect_unix(SOCKET)\nh.pwrite(b'gen{generation:04}', 0)"
            ))
            .ok();
    };
    let reads = || {
        server
            .client("h.connect_unix(SOCKET)\nprint(bytes(h.pread(7, 0)).decode())")
            .ok()
            .stdout
            .trim()
            .to_string()
    };
    mark(1);
    let mut generation = 1;
    let refusal = loop {
        let before = server.log().lines().count();
        match server.reload_rebuilt() {
            Ok(line) => {
                generation += 1;
                assert!(
                    line.contains(&format!("generation {generation} from")),
                    "{line}"
                );
                mark(generation);
                assert!(
                    generation <= 2 * NOFILE,
                    "{generation} generations loaded with a limit of {NOFILE} descriptors"
                );
            }
            Err(e) => {
                // The refusal is the only new line.
                let log = server.log();
                let new: Vec<&str> = log.lines().skip(before).collect();
                assert_eq!(new.len(), 1, "one line:\n{}\n({e})", new.join("\n"));
                break new[0].to_string();
            }
        }
    };
    eprintln!("{generation} generations with {NOFILE} descriptors, then: {refusal}");
    assert!(is_error_line(&refusal), "{refusal}");
    for needle in [
        "reload of '".to_string(),
        format!("refused, generation {generation} keeps serving"),
        "no file descriptor number left for another plugin or filter copy".to_string(),
        "restart nbdkit".to_string(),
    ] {
        assert!(refusal.contains(&needle), "'{needle}' not in: {refusal}");
    }
    // "About as many loads as the limit": most of the descriptors went to copies.
    assert!(
        generation >= NOFILE / 2,
        "reloads stopped after {generation} generations with a limit of {NOFILE}: {refusal}"
    );
    // The last generation taken still serves, on new connections, with its own data.
    assert!(server.is_running());
    assert_eq!(reads(), format!("gen{generation:04}"));
    server
        .client("h.connect_unix(SOCKET)\nh.pwrite(b'after!!', 0)")
        .ok();
    assert_eq!(reads(), "after!!");
}
