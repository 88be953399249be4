//! The harness helpers plugin authors get, used as they would use them, on every nbdkit: a
//! named export's URI and clients (`Server::export`), and hot reload (`reloadable()`,
//! `reload(build)`, `reload_rebuilt()`). (`dump_plugin` is used by `author_plugin_info.rs`.)

use rustshim_harness::{HarnessError, Server, ServerBuilder};
use rustshim_tests::*;

fn test_server(args: &[String]) -> ServerBuilder {
    Server::builder(plugin("test"))
        .shim(shim())
        .timeout(TIMEOUT)
        .args(args)
}

#[test]
fn a_named_export_has_its_uri_and_clients() {
    let t = Trace::new("author-export");
    let server = test_server(&[t.arg(), "exports=a,disk 2/x".into()])
        .start()
        .unwrap();
    for name in ["", "a", "disk 2/x", "é?&"] {
        let export = server.export(name);
        assert_eq!(export.name(), name);
        assert_eq!(
            export.python("print(h.get_export_name())").unwrap(),
            format!("{name}\n")
        );
        // The URI carries the name: nbdinfo connects with it.
        let json = export.nbdinfo(&["--json"]).unwrap();
        let escaped = name.replace('/', "\\/");
        assert!(
            json.contains(&format!("\"export-name\": \"{name}\""))
                || json.contains(&format!("\"export-name\": \"{escaped}\""))
                || !name.is_ascii(),
            "{name:?}: {json}"
        );
        assert_eq!(export.size().unwrap(), 1 << 20);
        export.write(512, name.as_bytes()).unwrap();
        assert_eq!(export.read(512, name.len()).unwrap(), name.as_bytes());
    }
    assert_eq!(server.uri(), server.export("").uri());
    assert!(
        server
            .export("disk 2/x")
            .uri()
            .starts_with("nbd+unix:///disk%202/x?socket="),
        "{}",
        server.export("disk 2/x").uri()
    );
    let opened: Vec<String> = t
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("export_name = "))
        .collect();
    for name in ["a", "disk 2/x", "é?&"] {
        assert!(
            opened.contains(&format!("export_name = Ok({name:?})")),
            "{name:?} in {opened:?}"
        );
    }
    // `--list` through the same URI sees the plugin's exports.
    let list = server.nbdinfo(&["--list"]).unwrap();
    assert!(list.contains("export=\"disk 2/x\""), "{list}");
}

#[test]
fn reload_puts_a_new_build_in_place_and_waits_for_the_shims_line() {
    let t = Trace::new("author-reload-helper");
    let server = test_server(&[t.arg()]).reloadable().start().unwrap();
    // The served file is the harness's copy, not the workspace's build (`command()` shortens
    // long arguments for messages, so the copy is looked for on disk).
    let copy = server.dir().join("plugin/librustshim_test.so");
    assert!(copy.is_file(), "{}", copy.display());
    server.write(0, b"kept").unwrap();

    // A new build (here the same code with bytes appended, as `rebuilt` makes it).
    let dir = temp_dir("author-builds");
    let line = server.reload(rebuilt(&plugin("test"), &dir, "v2")).unwrap();
    assert!(
        line.starts_with("nbdkit: rustshim: reload: generation 2 from ")
            && line.contains("serves new connections"),
        "{line}"
    );
    // The test plugin hands its size over; its data starts fresh.
    assert!(
        t.lines().iter().any(|l| l.starts_with("take_over")),
        "{:?}",
        t.lines()
    );
    assert_eq!(server.read(0, 4).unwrap(), [0; 4]);
    let line = server.reload_rebuilt().unwrap();
    assert!(line.contains("generation 3 from"), "{line}");

    // A build the shim refuses is an error with the shim's line; the last good one serves.
    let text = dir.join("text.so");
    std::fs::write(&text, "not a plugin\n").unwrap();
    let refused = server.reload(&text).unwrap_err();
    assert!(matches!(refused, HarnessError::Unexpected(_)));
    let refused = refused.to_string();
    assert!(
        refused.contains("refused, generation 3 keeps serving")
            && refused.contains("not a shared object"),
        "{refused}"
    );
    assert_eq!(server.size().unwrap(), 1 << 20);
}

#[test]
fn reload_needs_a_reloadable_server() {
    let server = test_server(&[]).start().unwrap();
    let e = server.reload_rebuilt().unwrap_err().to_string();
    assert!(e.contains("reloadable()"), "{e}");
    let e = ServerBuilder::new()
        .shim(shim())
        .arg(test_plugin())
        .reloadable()
        .start()
        .err()
        .expect("no plugin path to copy")
        .to_string();
    assert!(e.contains("Server::builder(plugin)"), "{e}");
}
