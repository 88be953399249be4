//! The host services of the shim that loaded this copy of the plugin (or filter): how the adapter, the
//! logger and the `server` functions reach nbdkit.

use std::sync::OnceLock;

use crate::abi::{FilterServicesRef, HostServicesRef};

/// Set once per loaded copy of a plugin file (each copy has its own statics), by the first
/// instance the shim makes.
static HOST: OnceLock<HostServicesRef> = OnceLock::new();

/// The shim's services, or `None` outside nbdkit (say, in a plugin's unit tests).
pub(crate) fn host() -> Option<HostServicesRef> {
    HOST.get().copied()
}

/// Remembers the shim's services; later calls (from other instances of the same copy) keep the
/// first, which is the same table.
pub(crate) fn set(services: HostServicesRef) {
    let _ = HOST.set(services);
}

/// The shim's filter services, set once per loaded copy of a filter.
static FILTER: OnceLock<FilterServicesRef> = OnceLock::new();

/// The shim's filter services, or `None` outside nbdkit (or in a plugin).
#[inline(always)]
pub(crate) fn filter_services() -> Option<FilterServicesRef> {
    FILTER.get().copied()
}

/// Remembers the shim's filter services (as [`set`]).
pub(crate) fn set_filter_services(services: FilterServicesRef) {
    let _ = FILTER.set(services);
}
