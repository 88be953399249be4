//! The shim's rules for a plugin's block size constraints (`check_block_size`,
//! host/src/containment.rs) are the shim's own code, written from nbdkit's. This test holds them
//! to the running nbdkit itself: each triple (minimum, preferred, maximum) is declared by one of
//! nbdkit's own plugins (`eval`, with `block_size` printing the triple; every nbdkit here has it:
//! the sh and eval plugins gained `block_size` in 1.30) and by the test plugin through the shim
//! (`block_size=MIN:PREF:MAX`), and a libnbd client connects to each. Both must be accepted or
//! refused alike, an accepted one advertising the same constraints; a refusal through the shim
//! must be the shim's (its line names the plugin and the values) for the rule nbdkit's own
//! message names, so nbdkit's check never sees a triple the shim let through.

use rustshim_tests::*;

/// The rule a refusal names, from nbdkit's message (`plugin must set minimum block size between
/// 1 and 64K`, …) or the shim's (`the minimum must be a power of 2 from 1 to 64K`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Minimum,
    Preferred,
    Maximum,
    Order,
}

fn nbdkits_rule(message: &str) -> Option<Rule> {
    let m = message.split("plugin must set ").nth(1)?;
    Some(if m.starts_with("minimum block size <=") {
        Rule::Order
    } else if m.starts_with("minimum block size") {
        Rule::Minimum
    } else if m.starts_with("preferred block size") {
        Rule::Preferred
    } else if m.starts_with("maximum block size") {
        Rule::Maximum
    } else {
        return None;
    })
}

fn shims_rule(why: &str) -> Option<Rule> {
    Some(if why.starts_with("the minimum must") {
        Rule::Minimum
    } else if why.starts_with("the preferred size must") {
        Rule::Preferred
    } else if why.starts_with("the maximum must") {
        Rule::Maximum
    } else if why.starts_with("they must be ordered") {
        Rule::Order
    } else {
        return None;
    })
}

/// The triples: at and around each rule's limits, then random ones: valid triples (a power of
/// two from 1 to 64K, one from 512 to 32M, no limit or a multiple of the minimum), half of them
/// with one value changed to an edge value, a random power of two or any 32-bit number.
fn triples() -> Vec<[u32; 3]> {
    const MAX: u32 = u32::MAX;
    let mut out = vec![
        [0, 0, 0],
        [0, 0, 4096],
        [1, 0, 0],
        [0, 512, MAX],
        [1, 512, 512],
        [1, 512, MAX],
        [2, 512, MAX - 1],
        [512, 512, 512],
        [512, 4096, MAX - 1],
        [4096, 4096, MAX - 4095],
        [65536, 65536, 65536],
        [65536, 32 << 20, MAX],
        [65536, 32 << 20, 32 << 20],
        [131072, 131072, MAX],
        [3, 4096, MAX],
        [1 << 31, 1 << 31, MAX],
        [1, 256, MAX],
        [1, 1000, MAX],
        [1, 64 << 20, MAX],
        [1, 1 << 31, MAX],
        [512, 4096, 1000],
        [512, 4096, 2048],
        [512, 4096, 0],
        [4096, 512, 65536],
        [8192, 4096, 65536],
        [512, 65536, 4096],
    ];
    let edges = [
        0,
        1,
        3,
        256,
        512,
        1000,
        4096,
        65536,
        131072,
        32 << 20,
        64 << 20,
        MAX - 1,
        MAX,
    ];
    let mut next = generator(0x5851_f42d_4c95_7f2d);
    for _ in 0..80 {
        let minimum = 1u32 << next(17);
        let preferred = 1u32 << (9 + next(17));
        let maximum = match next(3) {
            0 => MAX,
            _ => minimum.saturating_mul(1 + next((MAX / minimum) as usize) as u32),
        };
        let mut triple = [minimum, preferred, maximum];
        if next(2) == 0 {
            triple[next(3)] = match next(3) {
                0 => edges[next(edges.len())],
                1 => 1 << next(32),
                _ => (next(1 << 16) as u32) << 16 | next(1 << 16) as u32,
            };
        }
        out.push(triple);
    }
    out
}

/// For each triple's server (`argv` with `{}` standing for the triple), how a libnbd client
/// fares: `accepted MIN PREF MAX` (the constraints it sees) or `refused`; and the server's
/// stderr during that attempt.
fn connect_to_each(argvs: &[Vec<String>]) -> Vec<(String, String)> {
    let script = format!(
        r#"
argvs = {argvs:?}
for i, argv in enumerate(argvs):
    sys.stderr.write("@@ attempt %d\n" % i)
    sys.stderr.flush()
    h = nbd.NBD()
    try:
        h.connect_command(argv)
        r = "accepted %d %d %d" % (h.get_block_size(nbd.SIZE_MINIMUM),
                                   h.get_block_size(nbd.SIZE_PREFERRED),
                                   h.get_block_size(nbd.SIZE_MAXIMUM))
        h.shutdown()
    except nbd.Error as e:
        r = "refused"
    # Closing the handle reaps nbdkit, so its messages are before the next marker.
    del h
    print(r, flush=True)
"#
    );
    let out = python(&script).ok();
    let answers: Vec<&str> = out.stdout.lines().collect();
    let logs: Vec<String> = out
        .stderr
        .split("@@ attempt ")
        .skip(1)
        .map(|s| s.split_once('\n').map_or("", |(_, rest)| rest).to_owned())
        .collect();
    assert_eq!(answers.len(), argvs.len(), "{}", out.stderr);
    assert_eq!(logs.len(), argvs.len(), "{}", out.stderr);
    answers.into_iter().map(str::to_owned).zip(logs).collect()
}

#[test]
fn the_shim_accepts_and_refuses_the_block_sizes_nbdkit_does() {
    let triples = triples();
    let nbdkits: Vec<Vec<String>> = triples
        .iter()
        .map(|[a, b, c]| {
            argv(
                &shim_nbdkit()
                    .without_shim()
                    .nbdkit_args(["-s", "--exit-with-parent"])
                    .args([
                        "eval".to_string(),
                        "get_size=echo 1M".into(),
                        "pread=head -c \"$3\" /dev/zero".into(),
                        format!("block_size=echo {a} {b} {c}"),
                    ]),
            )
        })
        .collect();
    let shims: Vec<Vec<String>> = triples
        .iter()
        .map(|[a, b, c]| stdio_argv(&[], &[test_plugin(), format!("block_size={a}:{b}:{c}")]))
        .collect();
    let nbdkit_answers = connect_to_each(&nbdkits);
    let shim_answers = connect_to_each(&shims);

    let mut differ = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    let mut rules_seen = Vec::new();
    for (([a, b, c], (nbdkit, nbdkit_log)), (shim, shim_log)) in
        triples.iter().zip(&nbdkit_answers).zip(&shim_answers)
    {
        let triple = format!("{a}:{b}:{c}");
        let logs = format!(
            "\n  nbdkit's eval plugin said: {}\n  the shim said: {}",
            nbdkit_log.trim(),
            shim_log.trim()
        );
        if nbdkit != shim {
            differ.push(format!(
                "{triple}: nbdkit's eval plugin {nbdkit}, the shim {shim}{logs}"
            ));
            continue;
        }
        if nbdkit.starts_with("accepted") {
            accepted += 1;
            if shim_log.contains("block_size returned") {
                differ.push(format!("{triple}: accepted, yet the shim refused{logs}"));
            }
            continue;
        }
        refused += 1;
        let Some(rule) = nbdkit_log.lines().find_map(nbdkits_rule) else {
            differ.push(format!("{triple}: no rule in nbdkit's refusal{logs}"));
            continue;
        };
        rules_seen.push(rule);
        // The shim's own refusal, naming the plugin and the values, for the rule nbdkit names;
        // and nbdkit's check never reached.
        let head = format!(
            "rustshim: plugin 'test': block_size returned minimum {a} preferred {b} maximum {c}: "
        );
        match shim_log
            .lines()
            .find_map(|l| l.split_once(&head).map(|(_, why)| why))
        {
            None => differ.push(format!("{triple}: the shim did not refuse it itself{logs}")),
            Some(why) if shims_rule(why) != Some(rule) => differ.push(format!(
                "{triple}: refused for {rule:?} by nbdkit, for {:?} by the shim{logs}",
                shims_rule(why)
            )),
            Some(_) if shim_log.lines().any(|l| nbdkits_rule(l).is_some()) => {
                differ.push(format!("{triple}: nbdkit's own check saw it too{logs}"))
            }
            Some(_) => {}
        }
    }
    eprintln!(
        "nbdkit {}: {} triples, {accepted} accepted and {refused} refused by both",
        nbdkit_version(),
        triples.len()
    );
    assert!(
        differ.is_empty(),
        "{} of {} triples answered differently on nbdkit {}:\n{}",
        differ.len(),
        triples.len(),
        nbdkit_version(),
        differ.join("\n")
    );
    // Not an accident of the sample: both answers, and a refusal for every rule.
    assert!(accepted >= 10 && refused >= 10, "{accepted} {refused}");
    for rule in [Rule::Minimum, Rule::Preferred, Rule::Maximum, Rule::Order] {
        assert!(rules_seen.contains(&rule), "no triple refused for {rule:?}");
    }
}
