//! [`Handover`]: what one generation of a plugin passes to the next on a hot reload, by value
//! across the boundary ([`abi::Handover`]): a name, a format, and a reference to the state.

use std::ffi::c_void;

use crate::abi::{self, RVec, HANDOVER_AT_RETIRE, HANDOVER_BYTES, HANDOVER_PAGES};
use crate::shared_pages::SharedPages;

/// State one generation of a plugin hands to the next on a hot reload (see
/// [`crate::Plugin::hand_over`]). Dropping it without taking the state releases it.
pub struct Handover {
    raw: Option<abi::Handover>,
}

extern "C" fn release_pages(state: *const c_void) {
    drop(SharedPages::from_raw(state));
}

extern "C" fn release_bytes(state: *const c_void) {
    // SAFETY: made by `Handover::bytes` from a `Box<RVec<u8>>`; released once.
    drop(unsafe { Box::from_raw(state as *mut RVec<u8>) });
}

extern "C" fn release_nothing(_state: *const c_void) {}

impl Handover {
    /// Says "ask again when the old generation retires" (see `Plugin::HAND_OVER_AT_RETIRE`).
    pub(crate) fn at_retire_marker() -> abi::Handover {
        abi::Handover {
            kind: "".into(),
            format: HANDOVER_AT_RETIRE,
            state: std::ptr::null(),
            release: release_nothing,
        }
    }

    /// Shares `pages` with the successor under the name `kind` (say `"memory-disk"`): both
    /// generations then use the same data.
    pub fn pages(kind: &str, pages: &SharedPages) -> Handover {
        let state = pages.clone().into_raw();
        Handover {
            raw: Some(abi::Handover {
                kind: kind.into(),
                format: HANDOVER_PAGES,
                state,
                release: release_pages,
            }),
        }
    }

    /// Hands `bytes` (say, serialised settings) to the successor under the name `kind`.
    pub fn bytes(kind: &str, bytes: Vec<u8>) -> Handover {
        let state = Box::into_raw(Box::new(RVec::from(bytes))) as *const c_void;
        Handover {
            raw: Some(abi::Handover {
                kind: kind.into(),
                format: HANDOVER_BYTES,
                state,
                release: release_bytes,
            }),
        }
    }

    /// The name the predecessor gave the state.
    pub fn kind(&self) -> &str {
        self.raw.as_ref().map_or("", |r| r.kind.as_str())
    }

    /// The shared pages, if that is what this is (and their layout is one this build knows).
    pub fn into_pages(mut self) -> Option<SharedPages> {
        let raw = self.raw.take()?;
        if raw.format == HANDOVER_PAGES {
            if let Some(pages) = SharedPages::from_raw(raw.state) {
                return Some(pages); // takes over the reference
            }
        }
        (raw.release)(raw.state);
        None
    }

    /// The bytes, if that is what this is.
    pub fn into_bytes(mut self) -> Option<Vec<u8>> {
        let raw = self.raw.take()?;
        let bytes = (raw.format == HANDOVER_BYTES).then(|| {
            // SAFETY: format HANDOVER_BYTES means `state` is an `RVec<u8>`, alive until released.
            unsafe { &*(raw.state as *const RVec<u8>) }.to_vec()
        });
        (raw.release)(raw.state);
        bytes
    }

    pub(crate) fn into_raw(mut self) -> abi::Handover {
        self.raw.take().expect("a handover is used once")
    }

    pub(crate) fn from_raw(raw: abi::Handover) -> Handover {
        Handover { raw: Some(raw) }
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            (raw.release)(raw.state);
        }
    }
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Handover({:?})", self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handover_shares_the_same_data() {
        let pages = SharedPages::new(1 << 16).unwrap();
        pages.write_at(b"kept", 100).unwrap();
        let handed = Handover::pages("memory-disk", &pages);
        assert_eq!(handed.kind(), "memory-disk");
        let adopted = handed.into_pages().unwrap();
        adopted.write_at(b"both", 200).unwrap();
        let mut buf = [0u8; 4];
        pages.read_at(&mut buf, 200).unwrap();
        assert_eq!(&buf, b"both");
        drop(pages);
        adopted.read_at(&mut buf, 100).unwrap();
        assert_eq!(&buf, b"kept", "the data lives while any handle does");
        assert_eq!(
            Handover::bytes("x", vec![1, 2]).into_bytes(),
            Some(vec![1, 2])
        );
        assert!(Handover::bytes("x", vec![1]).into_pages().is_none());
    }
}
