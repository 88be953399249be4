//! [`Layer`]: one `--filter=rustshim` of the command line, its state ([`LAYERS`]), and how hot
//! reload serves it ([`Served`]).

use std::ffi::c_void;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rustshim_plugin_api::abi::{FilterModuleRef, LayerNext, RStr};
use rustshim_plugin_api::ThreadModel;

use super::version;
use crate::failure::Failure;
use crate::generation::{Generation, Lifecycle};
use crate::locate::Trust;
use crate::options::ShimState;
use crate::reload::Served;
use crate::services as host_services;
use crate::serving::Slot;

/// How many Rust filters one nbdkit can stack (one [`Layer`] each).
pub const MAX_LAYERS: usize = 8;

/// One `--filter=rustshim` of the command line.
pub struct Layer {
    /// 0 for the first `filter_init` call (the innermost `--filter`: nbdkit loads filters from
    /// the last on the command line to the first), counting up.
    pub index: usize,
    /// What serves.
    pub slot: Slot<FilterModuleRef>,
    /// The layer's options and filter file.
    pub(super) options: Mutex<ShimState>,
    /// Set once this layer passed a `filter=` on to the layer below: the keys that follow are
    /// that layer's.
    pub(super) passed_filter: std::sync::atomic::AtomicBool,
    /// What nbdkit gave: the next layer's thread model (-1: not given), the final model (-1:
    /// not yet), the layer below (`after_fork`), for a reloaded generation.
    pub(super) next_model: AtomicI32,
    pub(super) final_model: AtomicI32,
    pub(super) backend: AtomicPtr<c_void>,
    /// The `next` of `.config` (function and `nxdata`), for pairs that waited for `filter=`.
    pub(super) config_next: (AtomicPtr<c_void>, AtomicPtr<c_void>),
}

impl Layer {
    const fn new(index: usize) -> Self {
        Layer {
            index,
            slot: Slot::new(),
            options: Mutex::new(ShimState::new()),
            passed_filter: std::sync::atomic::AtomicBool::new(false),
            next_model: AtomicI32::new(-1),
            final_model: AtomicI32::new(-1),
            backend: AtomicPtr::new(std::ptr::null_mut()),
            config_next: (
                AtomicPtr::new(std::ptr::null_mut()),
                AtomicPtr::new(std::ptr::null_mut()),
            ),
        }
    }

    /// The layer's options (never held across a callback into the filter).
    pub fn options(&self) -> MutexGuard<'_, ShimState> {
        self.options
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The Rust filter, loaded if one was given; `None` if none was (`--dump-plugin` alone).
    pub fn filter_if_given(&self) -> Result<Option<Arc<Generation<FilterModuleRef>>>, Failure> {
        if let Some(g) = self.slot.current() {
            return Ok(Some(g));
        }
        let (given, trust) = {
            let options = self.options();
            let Some(given) = options.path.clone() else {
                return Ok(None);
            };
            (given, options.trust())
        };
        let path = crate::locate::resolve(&given, "filter")?;
        let generation = Arc::new(Generation::load(1, &path, trust)?);
        self.slot.replace(Arc::clone(&generation));
        Ok(Some(generation))
    }

    /// The serving generation and its callback `pick`ed from its module, if it has one.
    pub fn callback<F>(
        &self,
        pick: impl FnOnce(&FilterModuleRef) -> Option<F>,
    ) -> Option<(Arc<Generation<FilterModuleRef>>, F)> {
        let g = self.slot.current()?;
        let f = pick(&g.module)?;
        Some((g, f))
    }

    /// The Rust filter, loaded now if needed; one line if no `filter=` was given.
    pub fn filter(&self) -> Result<Arc<Generation<FilterModuleRef>>, Failure> {
        self.filter_if_given()?.ok_or_else(|| {
            Failure::invalid(
                "no filter given: add filter=PATH (a Rust filter .so built with rustshim-plugin-api) after --filter=rustshim; see nbdkit --filter=rustshim --help",
            )
        })
    }
}

/// Every layer's state.
pub static LAYERS: [Layer; MAX_LAYERS] = {
    let mut layers = [const { Layer::new(0) }; MAX_LAYERS];
    let mut i = 0;
    while i < MAX_LAYERS {
        layers[i].index = i;
        i += 1;
    }
    layers
};

/// How many layers `filter_init` made.
pub(super) static LAYERS_MADE: AtomicUsize = AtomicUsize::new(0);

/// The running nbdkit's filter ABI, learnt by the first `filter_init`.
pub(super) static ABI: OnceLock<version::FilterAbi> = OnceLock::new();

/// The running nbdkit's filter ABI (known once a layer is registered).
pub fn abi() -> Option<&'static version::FilterAbi> {
    ABI.get()
}

/// A filter's `thread_model` on a generation: the filter's answer, parallel without one.
pub(super) fn thread_model(
    g: &Generation<FilterModuleRef>,
    next_model: i32,
) -> Result<ThreadModel, Failure> {
    let Some(f) = g.module.thread_model() else {
        return Ok(ThreadModel::Parallel);
    };
    // SAFETY: the generation's own instance; a `&self` callback.
    g.thread_model_answer(unsafe { f(g.instance, next_model) })
}

/// Runs a single-threaded lifecycle callback of a generation: `Some(status)` if it has it.
fn lifecycle(
    g: &Generation<FilterModuleRef>,
    call: impl FnOnce(&FilterModuleRef) -> Option<i32>,
) -> Result<(), Failure> {
    match call(&g.module) {
        Some(r) if r < 0 => Err(host_services::take_error()),
        _ => Ok(()),
    }
}

/// A `next` that has nothing to call: a reloaded generation's `config` and `config_complete`
/// pass on to a layer below that was configured at start-up.
const REPLAYED: LayerNext = LayerNext {
    func: std::ptr::null(),
    data: std::ptr::null_mut(),
};

impl Served for Layer {
    type Module = FilterModuleRef;

    fn slot(&self) -> &Slot<FilterModuleRef> {
        &self.slot
    }

    fn trust(&self) -> Trust {
        self.options().trust()
    }

    fn configure(
        &self,
        g: &Generation<FilterModuleRef>,
        key: &str,
        value: &str,
    ) -> Result<(), Failure> {
        let Some(f) = g.module.config() else {
            return Ok(());
        };
        // SAFETY: a generation that does not serve yet: nothing else uses the instance.
        let r = unsafe {
            f(
                g.instance,
                REPLAYED,
                RStr::from_str(key),
                RStr::from_str(value),
            )
        };
        lifecycle(g, |_| Some(r))
    }

    fn step(&self, g: &Generation<FilterModuleRef>, step: Lifecycle) -> Result<(), Failure> {
        // SAFETY (each call): a generation that does not serve yet, so nothing else uses the
        // instance; the backend is the one nbdkit gave this layer, valid until `cleanup`.
        match step {
            Lifecycle::ConfigComplete => lifecycle(g, |m| {
                m.config_complete()
                    .map(|f| unsafe { f(g.instance, REPLAYED) })
            }),
            Lifecycle::GetReady => {
                let model = self.final_model.load(Ordering::Acquire);
                lifecycle(g, |m| {
                    m.get_ready().map(|f| unsafe { f(g.instance, model) })
                })
            }
            Lifecycle::AfterFork => {
                let backend = self.backend.load(Ordering::Acquire);
                g.backend.store(backend, Ordering::Release);
                lifecycle(g, |m| {
                    m.after_fork().map(|f| unsafe {
                        f(g.instance, rustshim_plugin_api::abi::BackendPtr(backend))
                    })
                })?;
                g.set_serving();
                Ok(())
            }
        }
    }

    fn thread_model(&self, g: &Generation<FilterModuleRef>) -> Result<ThreadModel, Failure> {
        thread_model(g, self.next_model.load(Ordering::Acquire))
    }
}
