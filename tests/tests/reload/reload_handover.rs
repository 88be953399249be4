//! What each kind of hot-reload hand-over guarantees to a connection that is open across the
//! swap and writes after it:
//!
//! * shared pages (`Handover::pages`, the `memory` plugin): both generations use one store, so
//!   a new connection reads the write at once (`reload.rs` tests this both ways);
//! * bytes at retirement (`Handover::bytes` with `HAND_OVER_AT_RETIRE = true`): the swap waits
//!   until the old generation's last connection has closed (new connections meanwhile go to it,
//!   and after a short while wait), and the state is handed over then, so the write is handed
//!   over too and a new connection reads it;
//! * a bytes snapshot (`Handover::bytes`, the default timing): the state is copied at the swap,
//!   so a write the old connection makes after it is not in the new generation, which is what
//!   the README says.

use std::path::PathBuf;
use std::sync::OnceLock;

use rustshim_tests::fixtures::{build_plugins, ApiCopy};
use rustshim_tests::*;

/// A block store whose state is a hash map (not pages): it can only hand over a copy.
const BLOCKS: &str = r#"
use rustshim_plugin_api::prelude::*;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
struct Blocks {
    map: Mutex<HashMap<u64, Vec<u8>>>,
}

#[plugin]
impl Plugin for Blocks {
    type Handle = ();
    const NAME: &'static str = "blocks";
    const VERSION: Option<&'static str> = Some("@VERSION@");
    const HAND_OVER_AT_RETIRE: bool = @RETIRE@;

    fn open(&self, _readonly: bool) -> Result<()> {
        Ok(())
    }

    fn get_size(&self, _: &()) -> Result<u64> {
        Ok(1 << 20)
    }

    fn pread(&self, _: &(), buf: &mut [u8], offset: u64, _flags: Flags) -> Result<()> {
        let map = self.map.lock().unwrap();
        for (i, b) in buf.iter_mut().enumerate() {
            let at = offset + i as u64;
            *b = map.get(&(at / 512)).map_or(0, |block| block[(at % 512) as usize]);
        }
        Ok(())
    }

    fn pwrite(&self, _: &(), buf: &[u8], offset: u64, _flags: Flags) -> Result<()> {
        let mut map = self.map.lock().unwrap();
        for (i, b) in buf.iter().enumerate() {
            let at = offset + i as u64;
            map.entry(at / 512).or_insert_with(|| vec![0; 512])[(at % 512) as usize] = *b;
        }
        Ok(())
    }

    fn hand_over(&self) -> Option<Handover> {
        let map = self.map.lock().unwrap();
        let mut bytes = Vec::new();
        for (block, data) in map.iter() {
            bytes.extend_from_slice(&block.to_le_bytes());
            bytes.extend_from_slice(data);
        }
        Some(Handover::bytes("blocks", bytes))
    }

    fn take_over(&mut self, state: Handover) -> Result<bool> {
        let Some(bytes) = state.into_bytes() else {
            return Ok(false);
        };
        let map = self.map.get_mut().unwrap();
        for record in bytes.chunks_exact(520) {
            map.insert(u64::from_le_bytes(record[..8].try_into().unwrap()), record[8..].to_vec());
        }
        Ok(true)
    }
}

export_plugin!(Blocks);
"#;

/// (snapshot v1, snapshot v2, at-retire v1, at-retire v2)
fn builds() -> &'static [PathBuf] {
    static BUILDS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    BUILDS.get_or_init(|| {
        let sources: Vec<(String, String)> = [("snapshot", "false"), ("retire", "true")]
            .iter()
            .flat_map(|(kind, retire)| {
                ["1", "2"].map(|v| {
                    (
                        format!("blocks_{kind}_v{v}"),
                        BLOCKS.replace("@VERSION@", v).replace("@RETIRE@", retire),
                    )
                })
            })
            .collect();
        let named: Vec<(&str, &str)> = sources
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_str()))
            .collect();
        build_plugins(
            "handover",
            &ApiCopy {
                version: "1.0.0",
                edits: &[],
            },
            &named,
            &[],
        )
    })
}

/// Serves `v1` with reload=watch; a connection writes "before" at 0, stays open while `v2`
/// lands, then writes "after!" at 4096 and closes; a new connection then reads both. Returns
/// what it read at 4096, and the reload line.
fn write_across_the_swap(v1: &std::path::Path, v2: &std::path::Path) -> (String, String) {
    let dir = temp_dir("handover-kinds");
    let watched = dir.join("libblocks.so");
    install_build(v1, &watched, Install::RenameOver);
    let server = serve(
        &[],
        &[
            format!("plugin={}", watched.display()),
            "reload=watch".into(),
        ],
    );
    let script = format!(
        r#"
import shutil
h1 = nbd.NBD()
h1.connect_unix(SOCKET)
h1.pwrite(b'before', 0)
shutil.copy({v2:?}, {plugin:?} + '.tmp'); os.rename({plugin:?} + '.tmp', {plugin:?})
# Past the load: the swap has happened, or is waiting for this connection.
time.sleep(1.0)
h1.pwrite(b'after!', 4096)
h1.shutdown()
while 'generation 2 from' not in open({log:?}).read():
    time.sleep(0.01)
h2 = nbd.NBD()
h2.connect_unix(SOCKET)
assert h2.pread(6, 0) == b'before', h2.pread(6, 0)
print(bytes(h2.pread(6, 4096)).hex())
"#,
        v2 = v2.display().to_string(),
        plugin = watched.display().to_string(),
        log = server.log_path().display().to_string(),
    );
    let out = server.client(&script).ok();
    let line = server
        .wait_for_log("generation 2 from", 1)
        .unwrap_or_else(|e| panic!("{e}"));
    (out.stdout.trim().to_string(), line)
}

#[test]
fn bytes_handed_over_at_retirement_keep_a_write_made_after_the_swap() {
    let b = builds();
    let (read, line) = write_across_the_swap(&b[2], &b[3]);
    assert_eq!(
        read,
        b"after!".map(|b| format!("{b:02x}")).concat(),
        "{line}"
    );
    assert!(line.contains("took over state 'blocks'"), "{line}");
    assert!(line.ends_with("generation 1 retires now"), "{line}");
}

#[test]
fn a_bytes_snapshot_does_not_have_a_write_made_after_the_swap() {
    let b = builds();
    let (read, line) = write_across_the_swap(&b[0], &b[1]);
    // As documented: the copy was made at the swap.
    assert_eq!(read, "000000000000", "{line}");
    assert!(line.contains("took over state 'blocks'"), "{line}");
}
