//! ARCHITECTURE.md's `Architecture invariant:` lines, checked against the tree: each test here
//! is named by the line it enforces, and a line with no test is itself a failure
//! (`every_invariant_names_its_test`). They read sources and `cargo metadata`, not nbdkit:
//! what they guard is the shape of the code, which behaviour tests cannot see.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// Every `.rs` file git tracks or would (new files not ignored), relative to the workspace.
fn sources() -> Vec<PathBuf> {
    let out = std::process::Command::new("git")
        .args([
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "*.rs",
        ])
        .current_dir(workspace())
        .output()
        .expect("running git ls-files");
    assert!(out.status.success(), "git ls-files failed");
    let files: Vec<PathBuf> = String::from_utf8(out.stdout)
        .expect("UTF-8 paths")
        .lines()
        .map(PathBuf::from)
        // Deleted in the work tree but not yet in the index: gone.
        .filter(|f| workspace().join(f).exists())
        .collect();
    assert!(files.len() > 100, "git ls-files found the sources");
    files
}

/// The lines of `file` that are code: comments (`//`, `//!`, `///`) left out.
fn code_lines(file: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(workspace().join(file)).expect("reading a source");
    text.lines()
        .enumerate()
        .map(|(n, line)| (n + 1, line.split("//").next().unwrap_or("").to_string()))
        .filter(|(_, code)| !code.trim().is_empty())
        .collect()
}

/// `line` with the insides of its string literals left out (a word in a message or in source
/// text a test writes is not a use of it).
fn without_strings(line: &str) -> String {
    let mut out = String::new();
    let (mut inside, mut escaped) = (false, false);
    for c in line.chars() {
        match (inside, escaped, c) {
            (true, false, '\\') => escaped = true,
            (true, true, _) => escaped = false,
            (_, false, '"') => {
                inside = !inside;
                out.push(c);
            }
            (false, _, c) => out.push(c),
            (true, false, _) => {}
        }
    }
    out
}

/// `(file:line, code)` of each code line of the tracked sources that contains `word` as a word.
fn uses_of(word: &str) -> Vec<(String, String)> {
    let is_word = |line: &str| {
        line.match_indices(word).any(|(at, _)| {
            let before = line[..at].chars().next_back();
            let after = line[at + word.len()..].chars().next();
            let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            !ident(before) && !ident(after)
        })
    };
    sources()
        .iter()
        .flat_map(|file| {
            code_lines(file)
                .into_iter()
                .filter(|(_, code)| is_word(&without_strings(code)))
                .map(move |(n, code)| (format!("{}:{n}", file.display()), code))
        })
        .collect()
}

/// `cargo metadata` of the workspace (no dependencies outside it).
fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace())
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON")
}

/// Each workspace package: its directory (relative to the workspace), its normal and build
/// dependencies' names, and its manifest's text.
fn packages() -> Vec<(String, BTreeSet<String>, String)> {
    let root = workspace();
    metadata()["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|package| {
            let manifest = PathBuf::from(package["manifest_path"].as_str().expect("a path"));
            let dir = manifest
                .parent()
                .expect("a directory")
                .strip_prefix(&root)
                .expect("in the workspace")
                .display()
                .to_string();
            let deps = package["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .map(|d| d["name"].as_str().expect("a name").to_string())
                .collect();
            let text = std::fs::read_to_string(&manifest).expect("reading a manifest");
            (dir, deps, text)
        })
        .collect()
}

/// The crates that meet the FFI: nbdkit's C ABI (the shim) and the plugin's side of the vtable.
const FFI_CRATES: &[&str] = &["host", "plugin-api", "plugin-api/macros"];

/// Files outside [`FFI_CRATES`] that may hold `unsafe`, each with the reason.
const UNSAFE_ELSEWHERE: &[(&str, &str)] = &[
    (
        "plugins/file/src/evict.rs",
        "sync_file_range, which no safe crate wraps (cache=none, as nbdkit's file plugin)",
    ),
    (
        "plugins/file/src/source.rs",
        "the fd=N the admin names, and openat's descriptor, made into Files",
    ),
];

#[test]
fn abi_stable_is_used_only_in_plugin_apis_abi() {
    for (dir, deps, _) in packages() {
        if deps.contains("abi_stable") {
            assert_eq!(dir, "plugin-api", "{dir} depends on abi_stable");
        }
    }
    for (place, code) in uses_of("abi_stable") {
        assert!(
            place.starts_with("plugin-api/src/abi/") || place.starts_with("tests/"),
            "abi_stable outside plugin-api/src/abi/: {place}: {code}"
        );
    }
}

#[test]
fn host_plugins_and_filters_depend_on_plugin_api_never_on_each_other() {
    let packages = packages();
    let name_of = |dir: &str| -> Option<String> {
        let manifest = packages.iter().find(|(d, _, _)| d == dir)?;
        manifest
            .2
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .map(|n| n.trim_matches('"').to_string())
    };
    let layer =
        |dir: &str| dir == "host" || dir.starts_with("plugins/") || dir.starts_with("filters/");
    let layer_names: BTreeSet<String> = packages
        .iter()
        .filter(|(dir, _, _)| layer(dir))
        .filter_map(|(dir, _, _)| name_of(dir))
        .collect();
    assert!(
        layer_names.len() >= 10,
        "found the shim, plugins and filters: {layer_names:?}"
    );
    for (dir, deps, _) in packages.iter().filter(|(dir, _, _)| layer(dir)) {
        assert!(
            deps.contains("rustshim-plugin-api"),
            "{dir} depends on rustshim-plugin-api"
        );
        let across: Vec<&String> = deps.intersection(&layer_names).collect();
        assert!(across.is_empty(), "{dir} depends on {across:?}");
    }
}

#[test]
fn unsafe_appears_only_at_the_ffi() {
    let ffi = |place: &str| {
        FFI_CRATES
            .iter()
            .any(|c| place.starts_with(&format!("{c}/src/")))
            || UNSAFE_ELSEWHERE
                .iter()
                .any(|(f, _)| place.starts_with(&format!("{f}:")))
    };
    let outside: Vec<_> = uses_of("unsafe")
        .into_iter()
        .filter(|(place, _)| !ffi(place))
        .collect();
    assert!(outside.is_empty(), "unsafe outside the FFI: {outside:#?}");
    // And the compiler holds every other crate to it.
    for (dir, _, manifest) in packages() {
        if FFI_CRATES.contains(&dir.as_str()) || dir == "plugins/file" {
            continue;
        }
        assert!(
            manifest.contains("unsafe_code = \"forbid\""),
            "{dir}/Cargo.toml forbids unsafe_code"
        );
    }
}

#[test]
fn the_shim_never_unloads_a_plugin_library() {
    let closes: Vec<_> = ["dlclose", "Library::close"]
        .iter()
        .flat_map(|word| uses_of(word))
        .filter(|(place, _)| !place.starts_with("tests/tests/project/architecture.rs"))
        .collect();
    assert!(closes.is_empty(), "a library is closed: {closes:#?}");
}

#[test]
fn the_choice_of_nbdkit_is_rustshim_root_and_nothing_else() {
    // Only the roots' module knows where the roots are; everything else is given one root
    // through RUSTSHIM_ROOT. (The layout tests read the roots' headers, not their nbdkits.)
    let allowed = ["cargo-rustshim/src/roots.rs", "host/src/nbdkit_c.rs"];
    let mut picks = Vec::new();
    for file in sources() {
        let place = file.display().to_string();
        if allowed.contains(&place.as_str()) || place == "tests/tests/project/architecture.rs" {
            continue;
        }
        for (n, code) in code_lines(&file) {
            if code.contains("/var/cache/rustshim") || code.contains("RUSTSHIM_ROOTS") {
                picks.push(format!("{place}:{n}: {code}"));
            }
        }
    }
    assert!(picks.is_empty(), "a server picked its own way: {picks:#?}");
}

#[test]
fn an_author_command_has_one_implementation() {
    // xtask's new-plugin and dev are calls into cargo-rustshim; xtask keeps no crate templates
    // of its own (only the shim's Debian package's).
    let main = std::fs::read_to_string(workspace().join("xtask/src/main.rs")).unwrap();
    for call in ["cargo_rustshim::new::", "cargo_rustshim::run::"] {
        assert!(main.contains(call), "xtask's main calls {call}");
    }
    let templates: Vec<String> = std::fs::read_dir(workspace().join("xtask/templates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        templates,
        ["package"],
        "xtask/templates holds only the package's"
    );
}

#[test]
fn every_source_file_is_in_the_code_map() {
    let map: String = ["ARCHITECTURE.md", "docs/internals.md", "docs/recipes.md"]
        .iter()
        .map(|doc| std::fs::read_to_string(workspace().join(doc)).unwrap())
        .collect();
    let missing: Vec<String> = sources()
        .iter()
        .filter(|f| {
            [
                "host/",
                "plugin-api/",
                "harness/",
                "cargo-rustshim/",
                "xtask/",
                "tests/src/",
            ]
            .iter()
            .any(|dir| f.starts_with(dir))
                && f.components().any(|c| c.as_os_str() == "src")
        })
        .filter_map(|f| {
            let stem = f.file_stem()?.to_str()?;
            if ["lib", "mod", "main", "build", "tests"].contains(&stem) {
                return None;
            }
            let named = map.match_indices(stem).any(|(at, _)| {
                let before = map[..at].chars().next_back();
                let after = map[at + stem.len()..].chars().next();
                let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                !ident(before) && !ident(after)
            });
            (!named).then(|| f.display().to_string())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md does not name: {missing:?}"
    );
}

#[test]
fn every_invariant_names_its_test() {
    let map = std::fs::read_to_string(workspace().join("ARCHITECTURE.md")).unwrap();
    let invariants: Vec<&str> = map
        .split("Architecture invariant:")
        .skip(1)
        .map(|rest| rest.split("\n\n").next().unwrap_or(rest))
        .collect();
    assert!(invariants.len() >= 8, "found the invariants");
    let tests: String = sources()
        .iter()
        .filter_map(|f| std::fs::read_to_string(workspace().join(f)).ok())
        .collect();
    for invariant in invariants {
        let invariant = invariant.split_whitespace().collect::<Vec<_>>().join(" ");
        let named: Vec<&str> = invariant
            .split("Enforced by `")
            .skip(1)
            .filter_map(|s| s.split('`').next())
            .collect();
        assert!(
            !named.is_empty(),
            "this invariant names no test (\"Enforced by `TEST`\"):{invariant}"
        );
        for test in named {
            let name = test.rsplit("::").next().unwrap();
            assert!(
                tests.contains(&format!("fn {name}(")),
                "the invariant names {test}, which does not exist"
            );
        }
    }
}

#[test]
fn every_source_file_the_docs_name_exists() {
    let files = sources();
    let mut docs: Vec<PathBuf> = ["README.md", "ARCHITECTURE.md", "BENCHMARKS.md"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Ok(dir) = std::fs::read_dir(workspace().join("docs")) {
        docs.extend(dir.map(|e| e.unwrap().path()));
    }
    let mut missing = Vec::new();
    for doc in docs {
        let text = std::fs::read_to_string(workspace().join(&doc)).unwrap();
        // Every `…NAME.rs` in backquotes: a path (tests/tests/x.rs) or a file's name (x.rs).
        for named in text.split('`').skip(1).step_by(2) {
            // Patterns (`callbacks_*.rs`, `src/NAME.rs`) name no one file.
            let pattern = named.contains(['{', '*']) || named.contains("NAME");
            if !named.ends_with(".rs") || named.contains(char::is_whitespace) || pattern {
                continue;
            }
            let exists = files
                .iter()
                .any(|f| f.ends_with(named) || f.to_string_lossy().ends_with(&format!("/{named}")));
            if !exists {
                missing.push(format!("{}: {named}", doc.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the docs name files that do not exist: {missing:#?}"
    );
}

#[test]
fn every_link_between_the_docs_leads_somewhere() {
    let mut docs = vec![PathBuf::from("README.md"), PathBuf::from("ARCHITECTURE.md")];
    docs.extend(
        std::fs::read_dir(workspace().join("docs"))
            .expect("docs/")
            .map(|e| {
                e.unwrap()
                    .path()
                    .strip_prefix(workspace())
                    .unwrap()
                    .to_path_buf()
            }),
    );
    let mut broken = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(workspace().join(doc)).unwrap();
        for target in text.split("](").skip(1).filter_map(|s| s.split(')').next()) {
            if target.contains("://") || target.starts_with('#') {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let path = workspace().join(doc.parent().unwrap()).join(file);
            let Ok(linked) = std::fs::read_to_string(&path) else {
                broken.push(format!("{}: {target}: no such file", doc.display()));
                continue;
            };
            // GitHub's anchors: a heading, lower-cased, spaces as '-', punctuation dropped.
            let anchors: Vec<String> = linked
                .lines()
                .filter_map(|l| {
                    l.trim_start_matches('#')
                        .strip_prefix(' ')
                        .filter(|_| l.starts_with('#'))
                })
                .map(|h| {
                    h.to_lowercase()
                        .chars()
                        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                        .map(|c| if c == ' ' { '-' } else { c })
                        .collect()
                })
                .collect();
            if !anchor.is_empty() && !anchors.iter().any(|a| a == anchor) {
                broken.push(format!(
                    "{}: {target}: no heading '{anchor}'",
                    doc.display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

/// The file-level import graph of the crate whose sources are under `root` (`host/src`): an
/// edge from a file to each file of the crate its code names through `crate::…` or
/// `super::…` (a group `{a, b}` names each), or through a child module it declares (`mod x;`
/// and `x::…`). Comments, strings and the test modules are left out.
fn import_graph(root: &str) -> BTreeMap<String, BTreeSet<String>> {
    let files: Vec<PathBuf> = sources()
        .into_iter()
        .filter(|f| f.starts_with(root))
        .collect();
    let module_of = |file: &Path| -> Vec<String> {
        let mut parts: Vec<String> = file
            .strip_prefix(root)
            .expect("under the root")
            .with_extension("")
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
            parts.pop();
        }
        parts
    };
    let files_by_module: BTreeMap<Vec<String>, String> = files
        .iter()
        .map(|f| (module_of(f), f.display().to_string()))
        .collect();
    // The file of the longest prefix of `path` that is a module of the crate.
    let file_of = |path: &[String]| {
        (1..=path.len())
            .rev()
            .find_map(|n| files_by_module.get(&path[..n]).cloned())
    };
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut graph = BTreeMap::new();
    for file in &files {
        let me = module_of(file);
        let name = file.display().to_string();
        let lines: Vec<String> = code_lines(file)
            .into_iter()
            .map(|(_, code)| without_strings(&code))
            .take_while(|code| code.trim() != "#[cfg(test)]")
            .collect();
        let code = lines.join("\n");
        let mut edges = BTreeSet::new();
        for start in ["crate::", "super::"] {
            for (at, _) in code.match_indices(start) {
                if code[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| ident(c) || c == ':')
                {
                    continue;
                }
                let mut base = if start == "crate::" {
                    Vec::new()
                } else {
                    me[..me.len().saturating_sub(1)].to_vec()
                };
                let mut rest = &code[at + start.len()..];
                while let Some(more) = rest.strip_prefix("super::") {
                    base.pop();
                    rest = more;
                }
                let mut path = base;
                loop {
                    let word: String = rest.chars().take_while(|c| ident(*c)).collect();
                    if word.is_empty() {
                        break;
                    }
                    path.push(word.clone());
                    rest = &rest[word.len()..];
                    match rest.strip_prefix("::") {
                        Some(more) => rest = more,
                        None => break,
                    }
                }
                let mut named = vec![path.clone()];
                if let Some(group) = rest.strip_prefix('{') {
                    let group = group.split('}').next().unwrap_or("");
                    for item in group.split(',') {
                        let first: String = item.trim().chars().take_while(|c| ident(*c)).collect();
                        if !first.is_empty() && first != "self" {
                            named.push([path.clone(), vec![first]].concat());
                        }
                    }
                }
                edges.extend(named.iter().filter_map(|p| file_of(p)));
            }
        }
        for line in &lines {
            let declared = line
                .trim()
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ");
            let Some(child) = declared
                .strip_prefix("mod ")
                .and_then(|m| m.strip_suffix(';'))
            else {
                continue;
            };
            let used = code.match_indices(&format!("{child}::")).any(|(at, _)| {
                !code[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| ident(c) || c == ':')
            });
            if used {
                edges.extend(file_of(&[me.clone(), vec![child.to_string()]].concat()));
            }
        }
        edges.remove(&name);
        graph.insert(name, edges);
    }
    graph
}

/// A circle of the graph, if it has one: the files in order, the first again at the end.
fn a_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        file: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|f| f == file) {
            return Some([&path[at..], &[file.to_string()]].concat());
        }
        if done.contains(file) {
            return None;
        }
        path.push(file.to_string());
        for next in graph.get(file).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, done, path) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(file.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|file| visit(file, graph, &mut done, &mut Vec::new()))
}

#[test]
fn the_host_and_the_harness_have_no_import_circle() {
    for root in ["host/src", "harness/src"] {
        let graph = import_graph(root);
        let edges: usize = graph.values().map(BTreeSet::len).sum();
        assert!(
            graph.len() > 8 && edges > 20,
            "{root}: the import graph was read ({} files, {edges} imports)",
            graph.len()
        );
        if let Some(circle) = a_circle(&graph) {
            panic!("{root} imports in a circle: {}", circle.join(" -> "));
        }
    }
}

#[test]
fn neither_half_of_the_host_imports_the_other_nor_does_what_they_share() {
    let half = |file: &str| {
        ["host/src/plugin/", "host/src/filter/"]
            .into_iter()
            .find(|dir| file.starts_with(dir))
    };
    let graph = import_graph("host/src");
    let wrong: Vec<String> = graph
        .iter()
        .filter(|(file, _)| file.as_str() != "host/src/lib.rs")
        .flat_map(|(file, imports)| {
            imports
                .iter()
                .filter(|to| half(to).is_some() && half(to) != half(file))
                .map(move |to| format!("{file} -> {to}"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "imports across the halves or up into one: {wrong:#?}"
    );
}
