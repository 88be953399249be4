//! Instructions per request, counted by callgrind: the one figure that the machine's load
//! cannot move.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::Path;

use rustshim_harness::FILTER_SHIM_INSTALLED;

use super::env::{Env, CRATE_PLUGIN};
use super::matrix::{Kind, RustModule};
use super::nbd::NbdClient;
use super::server::Server;
use super::{interrupted, Result};
use crate::workspace::SHIM;

/// Reads before callgrind's counters are zeroed, and reads counted after.
pub const CALLGRIND_WARMUP: u64 = 1_000;
pub const CALLGRIND_READS: u64 = 20_000;
/// The reads under callgrind cycle over this much of the disk, written first (so that the RAM
/// disks read allocated pages, as in the fio runs).
pub const CALLGRIND_REGION: u64 = 16 << 20;
/// The servers counted by callgrind.
pub const CALLGRIND_KINDS: [Kind; 7] = [
    Kind::CNull,
    Kind::ShimNull,
    Kind::CMemory,
    Kind::ShimMemory,
    Kind::Crate,
    Kind::NullCFilter,
    Kind::NullRustFilter,
];

/// What runs nbdkit under callgrind, writing to `out`.
pub fn valgrind(out: &Path) -> Vec<OsString> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}", out.display()).into(),
    ]
}

/// The objects the instructions of a server are split between, in the tables' order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Part {
    /// nbdkit's executable.
    Nbdkit,
    Libc,
    /// The shim loaded as the plugin (`libnbdkit_rustshim_plugin.so`).
    Shim,
    /// nbdkit's C plugin, the Rust plugin behind the shim, or the `nbdkit`-crate plugin.
    Plugin,
    /// The shim loaded as a filter: the bench's copy of it named as `cargo xtask install` names
    /// it ([`FILTER_SHIM_INSTALLED`]), so that it is an object of its own.
    FilterShim,
    /// nbdkit's C filter, or the Rust filter behind the filter shim.
    Filter,
    Elsewhere,
}

impl Part {
    pub const ALL: [Part; 7] = [
        Part::Nbdkit,
        Part::Libc,
        Part::Shim,
        Part::Plugin,
        Part::FilterShim,
        Part::Filter,
        Part::Elsewhere,
    ];

    /// The column of the instructions table.
    pub fn column(self) -> &'static str {
        match self {
            Part::Nbdkit => "in nbdkit",
            Part::Libc => "in libc",
            Part::Shim => "in the shim",
            Part::Plugin => "in the plugin",
            Part::FilterShim => "in the filter shim",
            Part::Filter => "in the filter",
            Part::Elsewhere => "elsewhere",
        }
    }
}

/// Where the instructions of one callgrind run went, by object.
#[derive(Default)]
struct Costs {
    total: u64,
    /// By [`Part`], in the order of [`Part::ALL`].
    parts: [u64; Part::ALL.len()],
}

/// Which part an object of `kind`'s server is, by the name callgrind gives it (`ob=`).
///
/// The shim loads a Rust plugin or filter from a sealed memory file (`/proc/self/fd/N`), which
/// valgrind cannot name: callgrind calls it `???`. Each server of the bench has at most one
/// such object, and its kind says which: the Rust plugin behind the plugin shim, or the Rust
/// filter behind the filter shim (over nbdkit's C `null`). The filter shim is the same file as
/// the shim; the bench loads a copy of it named `nbdkit-rustshim-filter.so`, as it is installed,
/// so that its instructions are told from the plugin shim's by name.
pub fn part_of(kind: Kind, object: &str) -> Part {
    let file = object.rsplit('/').next().unwrap_or(object);
    if object.ends_with("/nbdkit") {
        Part::Nbdkit
    } else if file.starts_with("libc.so") {
        Part::Libc
    } else if file == FILTER_SHIM_INSTALLED {
        Part::FilterShim
    } else if file == SHIM {
        Part::Shim
    } else if file.starts_with("librustshim_filter_")
        || (file.starts_with("nbdkit-") && file.ends_with("-filter.so"))
    {
        Part::Filter
    } else if file.starts_with("librustshim_")
        || (file.starts_with("nbdkit-") && file.ends_with("-plugin.so"))
        || file == CRATE_PLUGIN
    {
        Part::Plugin
    } else if object == "???" {
        match kind.rust_module() {
            Some(RustModule::Plugin) => Part::Plugin,
            Some(RustModule::Filter) => Part::Filter,
            None => Part::Elsewhere,
        }
    } else {
        Part::Elsewhere
    }
}

/// Self cost (Ir) per object from a callgrind output file: cost lines count for the current
/// `ob=`, except the one after `calls=` (that is the inclusive cost of a call).
fn parse_callgrind(kind: Kind, path: &Path) -> Result<Costs> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(costs_of(kind, &text))
}

/// [`parse_callgrind`] of the file's text.
fn costs_of(kind: Kind, text: &str) -> Costs {
    let mut names: HashMap<String, String> = HashMap::new();
    let mut resolve = |spec: &str| -> String {
        let spec = spec.trim();
        match spec.strip_prefix('(').and_then(|s| s.split_once(')')) {
            Some((id, name)) => {
                let name = name.trim();
                if name.is_empty() {
                    names.get(id).cloned().unwrap_or_default()
                } else {
                    names.insert(id.to_string(), name.to_string());
                    name.to_string()
                }
            }
            None => spec.to_string(),
        }
    };
    let mut costs = Costs::default();
    let mut part = Part::Elsewhere;
    let mut skip = false;
    for line in text.lines() {
        if let Some(spec) = line.strip_prefix("ob=") {
            part = part_of(kind, &resolve(spec));
        } else if let Some(spec) = line.strip_prefix("cob=") {
            resolve(spec);
        } else if line.starts_with("calls=") {
            skip = true;
        } else if let Some(total) = line.strip_prefix("totals:") {
            costs.total = total.trim().parse().unwrap_or(0);
        } else if line.starts_with(|c: char| c.is_ascii_digit() || "+-*".contains(c)) {
            if std::mem::take(&mut skip) {
                continue;
            }
            if let Some(ir) = line
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
            {
                costs.parts[part as usize] += ir;
            }
        }
    }
    let sum: u64 = costs.parts.iter().sum();
    if costs.total == 0 {
        costs.total = sum;
    }
    costs
}

/// nbdkit under callgrind: one connection writes [`CALLGRIND_REGION`] in 256 KiB requests and
/// reads it 4 KiB at a time ([`CALLGRIND_WARMUP`] reads); then callgrind's counters are zeroed,
/// the connection makes [`CALLGRIND_READS`] more reads (wrapping round), and callgrind dumps what
/// they cost. Returns that cost per read.
fn callgrind_run(env: &Env, kind: Kind, run_number: u32) -> Result<Instructions> {
    let out = env.dir.join(format!("callgrind-{kind:?}-{run_number}.out"));
    let mut server = env.start(kind, &valgrind(&out))?;
    let mut client = NbdClient::connect(server.socket())
        .map_err(|e| format!("cannot connect to {} under valgrind: {e}", kind.label()))?;
    let failed = |e: io::Error| format!("{} under valgrind: {e}", kind.label());
    let data: Vec<u8> = (0..256 << 10).map(|i: u32| (i % 251) as u8 | 1).collect();
    for offset in (0..CALLGRIND_REGION).step_by(data.len()) {
        client.write(&data, offset).map_err(failed)?;
    }
    let mut buf = vec![0u8; 4096];
    let mut offset = 0;
    let mut read = |client: &mut NbdClient, n: u64| -> Result {
        for _ in 0..n {
            client.read(&mut buf, offset).map_err(failed)?;
            offset = (offset + 4096) % CALLGRIND_REGION;
        }
        Ok(())
    };
    read(&mut client, CALLGRIND_WARMUP)?;
    callgrind_control(&server, "--zero")?;
    read(&mut client, CALLGRIND_READS)?;
    callgrind_control(&server, "--dump")?;
    client.disconnect();
    server.stop()?;
    // The dump is the file's first part, `OUT.1`; `OUT` itself has what came after.
    let mut dump = out.into_os_string();
    dump.push(".1");
    let costs = parse_callgrind(kind, Path::new(&dump))?;
    let per = |x: u64| x as f64 / CALLGRIND_READS as f64;
    Ok(Instructions {
        kind,
        total: per(costs.total),
        parts: costs.parts.map(per),
    })
}

fn callgrind_control(server: &Server, command: &str) -> Result {
    // valgrind's gdbserver makes the FIFOs callgrind_control talks through in its TMPDIR.
    let out = rustshim_harness::command("callgrind_control")
        .env("TMPDIR", server.tmpdir())
        .arg(command)
        .arg(server.pid().to_string())
        .output()
        .map_err(|e| format!("cannot run callgrind_control: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "callgrind_control {command} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Instructions per 4 KiB read in one server.
#[derive(Clone, Copy)]
pub struct Instructions {
    pub kind: Kind,
    /// Per read: total, then by [`Part`].
    pub total: f64,
    pub parts: [f64; Part::ALL.len()],
}

impl Instructions {
    /// Per read, in one part.
    pub fn part(&self, part: Part) -> f64 {
        self.parts[part as usize]
    }
}

/// Two callgrind runs per server: the first is reported, the second shows how repeatable it is.
pub fn count_instructions(env: &Env) -> Result<Vec<(Instructions, f64)>> {
    let mut results = Vec::new();
    for kind in CALLGRIND_KINDS {
        interrupted()?;
        println!("==> callgrind: {}, {CALLGRIND_READS} reads", kind.label());
        let first = callgrind_run(env, kind, 1)?;
        let second = callgrind_run(env, kind, 2)?;
        println!(
            "    {:.1} and {:.1} instructions per 4K read",
            first.total, second.total
        );
        results.push((first, second.total));
    }
    Ok(results)
}

/// Copies the callgrind files of the run into `kept` (emptied first), where
/// `callgrind_annotate` can read them after the scratch directory is gone.
pub fn keep_files(env: &Env, kept: &Path) -> Result {
    let _ = fs::remove_dir_all(kept);
    fs::create_dir_all(kept).map_err(|e| format!("cannot create {}: {e}", kept.display()))?;
    for entry in
        fs::read_dir(&env.dir).map_err(|e| format!("cannot list {}: {e}", env.dir.display()))?
    {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", env.dir.display()))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("callgrind-") {
            fs::copy(entry.path(), kept.join(&name))
                .map_err(|e| format!("cannot keep {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_told_apart_by_name_and_the_nameless_one_by_kind() {
        // Names as callgrind gave them in `cargo xtask bench --instructions`.
        let lib = "/usr/lib/x86_64-linux-gnu";
        let cases = [
            (Kind::NullRustFilter, "/usr/bin/nbdkit", Part::Nbdkit),
            (
                Kind::NullRustFilter,
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                Part::Libc,
            ),
            (
                Kind::NullRustFilter,
                "/tmp/rustshim-bench-24214/nbdkit-rustshim-filter.so",
                Part::FilterShim,
            ),
            (
                Kind::NullRustFilter,
                &format!("{lib}/nbdkit/plugins/nbdkit-null-plugin.so"),
                Part::Plugin,
            ),
            // The Rust filter, from its memory file.
            (Kind::NullRustFilter, "???", Part::Filter),
            (
                Kind::NullCFilter,
                &format!("{lib}/nbdkit/filters/nbdkit-nofilter-filter.so"),
                Part::Filter,
            ),
            (
                Kind::ShimNull,
                "/w/target/release/libnbdkit_rustshim_plugin.so",
                Part::Shim,
            ),
            // The Rust plugin, from its memory file.
            (Kind::ShimNull, "???", Part::Plugin),
            (Kind::ShimMemory, "???", Part::Plugin),
            (
                Kind::Crate,
                "/w/target/release/libnbdkit_crate_ramdisk.so",
                Part::Plugin,
            ),
            (
                Kind::CMemory,
                &format!("{lib}/nbdkit/plugins/nbdkit-memory-plugin.so"),
                Part::Plugin,
            ),
            // No Rust module here: nothing of it to blame.
            (Kind::CNull, "???", Part::Elsewhere),
            (
                Kind::CNull,
                &format!("{lib}/ld-linux-x86-64.so.2"),
                Part::Elsewhere,
            ),
        ];
        for (kind, object, part) in cases {
            assert_eq!(part_of(kind, object), part, "{object} in {kind:?}");
        }
    }

    #[test]
    fn self_costs_are_summed_by_part_and_inclusive_call_costs_skipped() {
        let text = "\
events: Ir
ob=(1) /usr/bin/nbdkit
fn=(1) main
0 100
cob=(2) /tmp/b/nbdkit-rustshim-filter.so
cfn=(2) pread
calls=1 0
0 57
ob=(2)
fn=(2)
0 42
+1 15
ob=(3) ???
fn=(3) f
0 7
totals: 164
";
        let costs = costs_of(Kind::NullRustFilter, text);
        assert_eq!(costs.total, 164);
        assert_eq!(costs.parts[Part::Nbdkit as usize], 100);
        assert_eq!(costs.parts[Part::FilterShim as usize], 57);
        assert_eq!(costs.parts[Part::Filter as usize], 7);
        assert_eq!(costs.parts.iter().sum::<u64>(), 164);
    }
}
