//! nbdkit-plugin(3), "Threads": the plugin's `.thread_model` reaches nbdkit, which enforces
//! it.

use rustshim_tests::*;

#[test]
fn thread_model_reaches_nbdkit() {
    for model in [
        "serialize_connections",
        "serialize_all_requests",
        "serialize_requests",
        "parallel",
    ] {
        let out = nbdkit(&[
            test_plugin(),
            format!("thread_model={model}"),
            "--dump-plugin".into(),
        ])
        .ok();
        assert!(
            out.stdout
                .lines()
                .any(|l| l == format!("thread_model={model}")),
            "{model}: {}",
            out.stdout
        );
    }
}

/// nbdkit enforces the plugin's thread model: four reads that each sleep 400 ms overlap on a
/// parallel plugin and run one after another on a serializing one.
#[test]
fn thread_model_is_enforced() {
    let body = "start = time.monotonic()\n\
                cmds = [h.aio_pread(nbd.Buffer(512), i * 512) for i in range(4)]\n\
                while h.aio_in_flight() > 0:\n    \
                    h.poll(-1)\n\
                assert all(h.aio_command_completed(c) for c in cmds)\n\
                print(round(time.monotonic() - start, 1))";
    let elapsed = |model: &str| -> f64 {
        let out = client(
            &[
                test_plugin(),
                "on_pread=sleep:400ms".into(),
                format!("thread_model={model}"),
            ],
            body,
        );
        out.trim().parse().unwrap()
    };
    let parallel = elapsed("parallel");
    assert!(parallel < 1.2, "parallel took {parallel} s");
    let serialized = elapsed("serialize_requests");
    assert!(serialized >= 1.5, "serialize_requests took {serialized} s");
}
