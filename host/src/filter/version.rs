//! Which filter ABI the running nbdkit has. nbdkit copies `struct nbdkit_filter` by value,
//! `sizeof` of its own build, and loads a filter only if `_version` is exactly its own version
//! string: so the shim must know the running version and its struct layout before it returns
//! from `filter_init`. The layouts come from nbdkit's history (`nbdkit-filter.h`):
//!
//! | nbdkit | layout | `thread_model` |
//! |---|---|---|
//! | 1.32.0 – 1.35.8 | 328 bytes ([`Layout::V132`]) | `(void)` |
//! | 1.35.9 – 1.43.8 | 336 bytes: `dump_plugin` added ([`Layout::V136`]) | `(void)` |
//! | 1.43.9 – 1.48.x | 336 bytes | `(int next_thread_model)` |
//!
//! Anything else is refused: loading a filter into a struct layout the shim does not know makes
//! nbdkit call through the wrong slots.

/// A struct layout of `struct nbdkit_filter`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// nbdkit 1.32 to 1.35: 328 bytes, no `dump_plugin`.
    V132,
    /// nbdkit 1.36 to 1.48: 336 bytes.
    V136,
}

/// The filter ABI of one nbdkit version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterAbi {
    /// The server's version string, which `_version` must equal.
    pub version: String,
    /// The struct layout.
    pub layout: Layout,
    /// Whether `thread_model` is given the next layer's model (nbdkit ≥ 1.44).
    pub thread_model_arg: bool,
}

/// The oldest and the newest nbdkit series this shim knows the filter ABI of.
pub const KNOWN: (&str, &str) = ("1.32", "1.48");

/// The ABI of nbdkit `version` (its `--dump-config` `version=`), or the one line saying why the
/// shim cannot be its filter.
pub fn for_version(version: &str) -> Result<FilterAbi, String> {
    let parts: Vec<u32> = version
        .split('.')
        .map(|p| p.parse().map_err(|_| ()))
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    let refuse = || {
        format!(
            "rustshim: the running nbdkit is {version}, but this rustshim filter knows the filter ABI of nbdkit {} to {} only: use nbdkit {} to {}, or a rustshim built for nbdkit {version}",
            KNOWN.0, KNOWN.1, KNOWN.0, KNOWN.1
        )
    };
    let &[major, minor, micro] = parts.as_slice() else {
        return Err(refuse());
    };
    let v = (major, minor, micro);
    if !((1, 32, 0)..(1, 49, 0)).contains(&v) {
        return Err(refuse());
    }
    Ok(FilterAbi {
        version: version.to_owned(),
        layout: if v < (1, 35, 9) {
            Layout::V132
        } else {
            Layout::V136
        },
        thread_model_arg: v >= (1, 43, 9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_debian_versions() {
        let abi = for_version("1.32.5").unwrap();
        assert_eq!((abi.layout, abi.thread_model_arg), (Layout::V132, false));
        let abi = for_version("1.42.3").unwrap();
        assert_eq!((abi.layout, abi.thread_model_arg), (Layout::V136, false));
        let abi = for_version("1.48.1").unwrap();
        assert_eq!((abi.layout, abi.thread_model_arg), (Layout::V136, true));
        assert_eq!(abi.version, "1.48.1");
    }

    #[test]
    fn the_development_releases_that_changed_it() {
        assert_eq!(for_version("1.35.8").unwrap().layout, Layout::V132);
        assert_eq!(for_version("1.35.9").unwrap().layout, Layout::V136);
        assert!(!for_version("1.43.8").unwrap().thread_model_arg);
        assert!(for_version("1.43.9").unwrap().thread_model_arg);
    }

    #[test]
    fn unknown_versions_are_refused_naming_both() {
        for v in ["1.30.9", "1.49.0", "1.50.2", "2.0.0", "1.32", "garbage", ""] {
            let why = for_version(v).unwrap_err();
            assert!(why.contains(&format!("running nbdkit is {v},")), "{why}");
            assert!(why.contains("1.32 to 1.48"), "{why}");
            assert_eq!(why.lines().count(), 1);
        }
    }
}
