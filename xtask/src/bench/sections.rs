//! BENCHMARKS.md in sections: every `## ` section starts with the line that says which command
//! wrote it, at which commit, when and on which nbdkit, and the parts of the bench that run on
//! their own (`--instructions`, `--load`, `--reload`) rewrite their own section and leave the
//! others as they are.

use std::fs;

use super::machine::Machine;
use super::{write_file, Result};
use crate::workspace::{output, workspace};

/// The report's file, in the workspace.
pub const BENCHMARKS: &str = "BENCHMARKS.md";
/// The chart, beside it.
pub const CHART: &str = "benchmarks.svg";
/// The section a section missing from the file is put before (the full run's fio commands),
/// if the file has it; otherwise it goes at the end.
const INSERT_BEFORE: &str = "## Method: the exact commands";

/// Who wrote a section.
pub struct Stamp {
    /// The command as typed, e.g. `cargo xtask bench --load`.
    pub command: String,
    /// `git rev-parse --short HEAD`, and whether the tree had other changes.
    pub commit: String,
    pub date: String,
    pub nbdkit: String,
}

impl Stamp {
    /// `command` run now on this checkout.
    pub fn new(command: String, machine: &Machine) -> Stamp {
        Stamp {
            command,
            commit: commit(),
            date: machine.date.clone(),
            nbdkit: machine.nbdkit.clone(),
        }
    }

    /// The first line of a section. `alone`: the command that rewrites only this section, when
    /// it is not the one that wrote it.
    pub fn line(&self, alone: Option<&str>) -> String {
        let alone = match alone {
            Some(alone) if alone != self.command => {
                format!(" (this section alone: `{alone}`)")
            }
            _ => String::new(),
        };
        format!(
            "*Written by `{}`{alone} at commit {} on {}, {}.*",
            self.command, self.commit, self.date, self.nbdkit
        )
    }
}

/// The commit the workspace is at, `abc1234`, with "with uncommitted changes" when files other
/// than the report's own differ from it (or are new); what went wrong if git cannot say.
pub fn commit() -> String {
    let git = |args: &[&str]| {
        let mut cmd = std::process::Command::new("git");
        cmd.current_dir(workspace()).args(args);
        output(&format!("git {}", args.join(" ")), &mut cmd)
    };
    let head = match git(&["rev-parse", "--short", "HEAD"]) {
        Ok(head) => head.trim().to_string(),
        Err(e) => return format!("unknown ({e})"),
    };
    let exclude_benchmarks = format!(":(exclude){BENCHMARKS}");
    let exclude_chart = format!(":(exclude){CHART}");
    match git(&[
        "status",
        "--porcelain",
        "--",
        ".",
        &exclude_benchmarks,
        &exclude_chart,
    ]) {
        Ok(status) if status.trim().is_empty() => format!("`{head}`"),
        Ok(_) => format!("`{head}` with uncommitted changes"),
        Err(e) => format!("`{head}` (whether with uncommitted changes: {e})"),
    }
}

/// The heading line a section starts with.
fn heading(section: &str) -> &str {
    section.lines().next().unwrap_or_default()
}

/// `doc` with the section of the same heading as `section` (from its `## ` line to the next
/// one, or the end) replaced by `section`; a section it does not have is put before the
/// full run's fio commands, or at the end.
pub fn replace_section(doc: &str, section: &str) -> String {
    let title = heading(section);
    assert!(
        title.starts_with("## "),
        "a section starts with its heading"
    );
    let section = format!("{}\n", section.trim_end());
    // Where each `## ` line starts.
    let mut starts = Vec::new();
    let mut at = 0;
    for line in doc.split_inclusive('\n') {
        if line.starts_with("## ") {
            starts.push(at);
        }
        at += line.len();
    }
    let end_of = |start: usize| {
        starts
            .iter()
            .copied()
            .find(|&s| s > start)
            .unwrap_or(doc.len())
    };
    let line_at = |start: usize| doc[start..].lines().next().unwrap_or_default();
    if let Some(&start) = starts.iter().find(|&&s| line_at(s) == title) {
        let end = end_of(start);
        let gap = if end < doc.len() { "\n" } else { "" };
        return format!("{}{section}{gap}{}", &doc[..start], &doc[end..]);
    }
    match starts.iter().find(|&&s| line_at(s) == INSERT_BEFORE) {
        Some(&start) => format!("{}{section}\n{}", &doc[..start], &doc[start..]),
        None if doc.is_empty() => section,
        None => format!("{}\n\n{section}", doc.trim_end()),
    }
}

/// Rewrites one section of BENCHMARKS.md, leaving the rest as it is.
pub fn write_section(section: &str) -> Result {
    let path = workspace().join(BENCHMARKS);
    let doc = match fs::read_to_string(&path) {
        Ok(doc) => doc,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    write_file(&path, &replace_section(&doc, section))?;
    println!("wrote the section {:?} of {BENCHMARKS}", heading(section));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# Title\n\nintro\n\n## A\n\na text\n\n## Method: the exact commands\n\nm\n\n## B\n\nb text\n";

    #[test]
    fn a_section_is_replaced_and_nothing_else() {
        assert_eq!(
            replace_section(DOC, "## A\n\nnew a\n"),
            "# Title\n\nintro\n\n## A\n\nnew a\n\n## Method: the exact commands\n\nm\n\n## B\n\nb text\n"
        );
        // The last one, with no blank line to keep after it.
        assert_eq!(
            replace_section(DOC, "## B\n\nnew b\n\n"),
            "# Title\n\nintro\n\n## A\n\na text\n\n## Method: the exact commands\n\nm\n\n## B\n\nnew b\n"
        );
    }

    #[test]
    fn a_new_section_goes_before_the_method_or_at_the_end() {
        assert_eq!(
            replace_section(DOC, "## C\n\nc\n"),
            "# Title\n\nintro\n\n## A\n\na text\n\n## C\n\nc\n\n## Method: the exact commands\n\nm\n\n## B\n\nb text\n"
        );
        assert_eq!(
            replace_section("# Title\n\n## A\n\na\n", "## C\n\nc\n"),
            "# Title\n\n## A\n\na\n\n## C\n\nc\n"
        );
        assert_eq!(replace_section("", "## C\n\nc"), "## C\n\nc\n");
    }

    #[test]
    fn a_heading_only_matches_whole() {
        // "## A" is not "## A longer heading".
        let doc = "## A longer heading\n\nx\n";
        assert_eq!(
            replace_section(doc, "## A\n\ny\n"),
            "## A longer heading\n\nx\n\n## A\n\ny\n"
        );
    }
}
