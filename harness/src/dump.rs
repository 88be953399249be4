//! [`PluginDump`]: what `nbdkit … --dump-plugin` says about a plugin, as key/value pairs.

use std::path::Path;

use crate::builder::ServerBuilder;
use crate::error::{HarnessError, Result};
use crate::server::Server;

/// The `key=value` lines of `nbdkit SHIM plugin=PLUGIN [args] --dump-plugin`: nbdkit's own
/// (`name=rustshim`, `has_pread=1`, …), the shim's (`rustshim_plugin_name=…`,
/// `rustshim_plugin_version=…`, `rustshim_has_pread=1`, …) and then the plugin's own, from its
/// `dump_plugin`. nbdkit runs `--dump-plugin` in a process of its own: the plugin gets `load`,
/// its `config` for each argument, and `dump_plugin`, but never `config_complete`, `get_ready`
/// or a connection.
///
/// ```no_run
/// # fn main() -> Result<(), rustshim_harness::HarnessError> {
/// let dump = rustshim_harness::dump_plugin(rustshim_harness::plugin_path!(), &[])?;
/// assert_eq!(dump.get("rustshim_plugin_name"), Some("my-disk"));
/// assert_eq!(dump.get("rustshim_has_pwrite"), Some("1"));
/// assert_eq!(dump.plugin_fields(), [("my_disk_pages".to_string(), "0".to_string())]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginDump {
    /// Every line, split at its first `=`, in order.
    pub fields: Vec<(String, String)>,
    /// What nbdkit printed on stderr meanwhile (a refused `dump_plugin` line, a warning).
    pub stderr: String,
}

impl PluginDump {
    /// Parses `--dump-plugin`'s standard output; a line without `=` is an error.
    pub fn parse(stdout: &str, stderr: &str) -> Result<PluginDump> {
        let fields = stdout
            .lines()
            .map(|line| {
                line.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| {
                        HarnessError::Unexpected(format!(
                            "--dump-plugin printed a line that is not key=value: {line:?}\n\
                             its output:\n{stdout}"
                        ))
                    })
            })
            .collect::<Result<_>>()?;
        Ok(PluginDump {
            fields,
            stderr: stderr.to_owned(),
        })
    }

    /// The value of the first line with this key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The lines the plugin's own `dump_plugin` printed: those after the shim's `rustshim_…`
    /// lines.
    pub fn plugin_fields(&self) -> &[(String, String)] {
        let after_shim = self
            .fields
            .iter()
            .rposition(|(k, _)| k.starts_with("rustshim_"))
            .map_or(0, |i| i + 1);
        &self.fields[after_shim..]
    }
}

/// Runs `nbdkit SHIM plugin=PLUGIN ARGS --dump-plugin` ([`ServerBuilder::dump_plugin`] for
/// other options) and returns its lines; fails with nbdkit's output if it fails.
pub fn dump_plugin(plugin: impl AsRef<Path>, args: &[&str]) -> Result<PluginDump> {
    Server::builder(plugin).args(args).dump_plugin()
}

impl ServerBuilder {
    /// Runs this command line with `--dump-plugin` added, in the foreground, and returns its
    /// lines: see [`PluginDump`]. Fails with nbdkit's output if nbdkit fails.
    pub fn dump_plugin(self) -> Result<PluginDump> {
        let command = self.clone().arg("--dump-plugin");
        let shown = command
            .argv()
            .map(|words| {
                words
                    .iter()
                    .map(|w| w.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let out = command.run()?;
        if !out.success() {
            return Err(HarnessError::Start {
                command: shown,
                reason: format!("--dump-plugin failed ({})", out.status),
                log: format!("{}{}", out.stdout, out.stderr),
            });
        }
        PluginDump::parse(&out.stdout, &out.stderr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_equals_sign_and_the_plugins_come_last() {
        let dump = PluginDump::parse(
            "name=rustshim\nrustshim_plugin_name=x\nrustshim_has_pread=1\nx_a=1=2\nx_b=\n",
            "",
        )
        .unwrap();
        assert_eq!(dump.get("rustshim_plugin_name"), Some("x"));
        assert_eq!(dump.get("x_a"), Some("1=2"));
        assert_eq!(dump.get("missing"), None);
        assert_eq!(
            dump.plugin_fields(),
            [("x_a".into(), "1=2".into()), ("x_b".into(), String::new())]
        );
        assert!(PluginDump::parse("no equals sign\n", "").is_err());
    }
}
