//! nbdkit's C ABI as the shim sees it: `#[repr(C)]` mirrors of `struct nbdkit_plugin`
//! (`<nbdkit-plugin.h>`, API version 2), of `struct nbdkit_filter` in its two layouts and of
//! `struct nbdkit_next_ops` (`<nbdkit-filter.h>`), each checked field by field against the real
//! headers by unit tests, and nbdkit's server functions, looked up in the running server
//! ([`server`]).

mod server;
mod types;

pub use server::{cstring_lossy, debug, error, server, set_errno, ServerApi};
pub use types::*;

#[cfg(test)]
mod layout_tests {
    //! The mirrors against nbdkit's real headers, measured when the tests run (not when the
    //! shim is built, so the result cannot depend on which headers a machine had at build
    //! time): each test writes a small C program that prints the struct's size and its fields'
    //! offsets, compiles it with the system's `cc` against one nbdkit's headers and reads what
    //! it prints. The headers are the host's (`/usr/include`, Debian 12's nbdkit 1.32) and those
    //! of the Debian roots `cargo xtask roots` makes (trixie's 1.42, forky's 1.48), in
    //! `$RUSTSHIM_ROOTS` or `/var/cache/rustshim/roots`.

    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::{NbdkitFilter132, NbdkitFilter136, NbdkitNextOps, NbdkitPlugin};

    /// A struct as one header has it: `NBDKIT_VERSION_MINOR`, its size and its fields' offsets.
    struct Measured {
        minor: u32,
        size: usize,
        fields: Vec<(String, usize)>,
    }

    /// Measures `struct c_struct`'s `fields` in the headers under `include`, after `#include`
    /// of `header`.
    fn measure(include: &Path, header: &str, c_struct: &str, fields: &[&str]) -> Measured {
        let found = include.join(header);
        assert!(
            found.exists(),
            "{} is missing: install nbdkit-plugin-dev, and make the Debian roots with `cargo xtask roots` (cargo xtask test does both)",
            found.display()
        );
        let mut c = format!(
            "#include <stddef.h>\n#include <stdio.h>\n#define NBDKIT_API_VERSION 2\n\
             #include <{header}>\n#include <nbdkit-version.h>\nint main (void) {{\n\
             printf (\"minor %d\\n\", NBDKIT_VERSION_MINOR);\n\
             printf (\"size %zu\\n\", sizeof (struct {c_struct}));\n"
        );
        for field in fields {
            c += &format!("printf (\"{field} %zu\\n\", offsetof (struct {c_struct}, {field}));\n");
        }
        c += "return 0;\n}\n";
        let dir = std::env::temp_dir().join(format!(
            "rustshim-layout-{}-{c_struct}-{}",
            std::process::id(),
            include.display().to_string().replace('/', "_")
        ));
        std::fs::create_dir_all(&dir).expect("creating the layout test's directory");
        let source = dir.join("layout.c");
        let program = dir.join("layout");
        std::fs::write(&source, c).expect("writing layout.c");
        // Newer nbdkits' headers have declarations today's gcc warns about: -w.
        let compiled = Command::new("cc")
            .arg("-w")
            .arg("-I")
            .arg(include)
            .arg(&source)
            .arg("-o")
            .arg(&program)
            .output()
            .expect("running cc");
        let ran = compiled.status.success().then(|| {
            Command::new(&program)
                .output()
                .expect("running the layout program")
        });
        std::fs::remove_dir_all(&dir).expect("removing the layout test's directory");
        assert!(
            compiled.status.success(),
            "cc could not measure struct {c_struct} in {}:\n{}",
            include.display(),
            String::from_utf8_lossy(&compiled.stderr)
        );
        let out = String::from_utf8(ran.expect("compiled").stdout).expect("ASCII output");
        let mut lines = out.lines().map(|l| {
            let (name, value) = l.split_once(' ').expect("NAME VALUE");
            (name.to_string(), value.parse::<usize>().expect("a number"))
        });
        let (_, minor) = lines.next().expect("the minor version");
        let (_, size) = lines.next().expect("the size");
        Measured {
            minor: minor.try_into().expect("a small minor version"),
            size,
            fields: lines.collect(),
        }
    }

    /// Where `cargo xtask roots` keeps the Debian roots (as `cargo_rustshim::roots::dir`).
    fn roots() -> PathBuf {
        std::env::var_os("RUSTSHIM_ROOTS")
            .map_or_else(|| PathBuf::from("/var/cache/rustshim/roots"), PathBuf::from)
    }

    fn names(fields: &[(&'static str, usize)]) -> Vec<&'static str> {
        fields.iter().map(|(name, _)| *name).collect()
    }

    /// Compares a mirror's fields (name, offset) and size with what the C compiler measured.
    fn compare(what: &str, mirror: &[(&str, usize)], size: usize, c: &Measured) {
        assert_eq!(mirror.len(), c.fields.len(), "{what}: number of fields");
        for (name, offset) in mirror {
            let c_offset = c.fields.iter().find(|(n, _)| n == name).map(|f| f.1);
            assert_eq!(Some(*offset), c_offset, "{what}: offset of {name}");
        }
        assert_eq!(
            size, c.size,
            "{what}: sizeof: a field at the end is missing or extra"
        );
    }

    #[test]
    fn plugin_struct_matches_the_installed_header() {
        let fields = names(NbdkitPlugin::FIELDS);
        let c = measure(
            Path::new("/usr/include"),
            "nbdkit-plugin.h",
            "nbdkit_plugin",
            &fields,
        );
        let size = std::mem::size_of::<NbdkitPlugin>();
        compare("struct nbdkit_plugin", NbdkitPlugin::FIELDS, size, &c);
    }

    /// The filter struct in the layout of the header's version, and next_ops, against the
    /// headers under `include`, which must be nbdkit 1.`expect`'s.
    fn filter_structs_match(include: &Path, expect: u32) {
        let (mirror, size) = if expect < 36 {
            let size = std::mem::size_of::<NbdkitFilter132>();
            (NbdkitFilter132::FIELDS, size)
        } else {
            (
                NbdkitFilter136::FIELDS,
                std::mem::size_of::<NbdkitFilter136>(),
            )
        };
        let c = measure(include, "nbdkit-filter.h", "nbdkit_filter", &names(mirror));
        assert_eq!(
            c.minor,
            expect,
            "the header in {} is nbdkit 1.{expect}'s",
            include.display()
        );
        compare(
            &format!("struct nbdkit_filter of nbdkit 1.{expect}"),
            mirror,
            size,
            &c,
        );
        let next_ops = names(NbdkitNextOps::FIELDS);
        let c = measure(include, "nbdkit-filter.h", "nbdkit_next_ops", &next_ops);
        let size = std::mem::size_of::<NbdkitNextOps>();
        let what = format!("struct nbdkit_next_ops of nbdkit 1.{expect}");
        compare(&what, NbdkitNextOps::FIELDS, size, &c);
    }

    #[test]
    fn filter_structs_match_the_header_of_nbdkit_1_32() {
        filter_structs_match(Path::new("/usr/include"), 32);
    }

    #[test]
    fn filter_structs_match_the_header_of_nbdkit_1_42() {
        filter_structs_match(&roots().join("trixie/usr/include"), 42);
    }

    #[test]
    fn filter_structs_match_the_header_of_nbdkit_1_48() {
        filter_structs_match(&roots().join("forky/usr/include"), 48);
    }

    #[test]
    fn the_older_filter_layout_is_the_newer_without_dump_plugin() {
        let old: Vec<&str> = NbdkitFilter132::FIELDS.iter().map(|f| f.0).collect();
        let new: Vec<&str> = NbdkitFilter136::FIELDS.iter().map(|f| f.0).collect();
        let expected: Vec<&str> = new
            .iter()
            .copied()
            .filter(|f| *f != "dump_plugin")
            .collect();
        assert_eq!(old, expected);
        assert_eq!(std::mem::size_of::<NbdkitFilter132>(), 328);
        assert_eq!(std::mem::size_of::<NbdkitFilter136>(), 336);
    }
}
