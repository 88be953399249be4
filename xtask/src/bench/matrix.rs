//! What is compared: the ways of serving a disk, the comparisons between them with their
//! targets, the fio workloads, and which of them a run measures.

/// One way of serving a disk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    CNull,
    ShimNull,
    CMemory,
    ShimMemory,
    CFile,
    ShimFile,
    Crate,
    Python,
    /// C null behind nbdkit's `nofilter` filter.
    NullCFilter,
    /// C null behind the `passthrough` Rust filter (`--filter=rustshim`).
    NullRustFilter,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::CNull => "C null",
            Kind::ShimNull => "rustshim null",
            Kind::CMemory => "C memory",
            Kind::ShimMemory => "rustshim memory",
            Kind::CFile => "C file",
            Kind::ShimFile => "rustshim file",
            Kind::Crate => "nbdkit-crate ramdisk",
            Kind::Python => "python ramdisk",
            Kind::NullCFilter => "C null + C nofilter",
            Kind::NullRustFilter => "C null + rustshim passthrough",
        }
    }

    /// The Rust module the shim serves this way, if any (loaded from a memory file, so nameless
    /// to valgrind: see `callgrind::part_of`).
    pub fn rust_module(self) -> Option<RustModule> {
        match self {
            Kind::ShimNull | Kind::ShimMemory | Kind::ShimFile => Some(RustModule::Plugin),
            Kind::NullRustFilter => Some(RustModule::Filter),
            Kind::CNull
            | Kind::CMemory
            | Kind::CFile
            | Kind::Crate
            | Kind::Python
            | Kind::NullCFilter => None,
        }
    }

    /// A disk that keeps what is written: written whole before measuring, so that reads hit
    /// allocated pages.
    pub fn keeps_data(self) -> bool {
        matches!(
            self,
            Kind::CMemory | Kind::ShimMemory | Kind::Crate | Kind::Python
        )
    }
}

/// What the shim serves: a Rust plugin, or a Rust filter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RustModule {
    Plugin,
    Filter,
}

/// What a comparison must show (nothing is asserted: the report says met or missed).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A C twin: IOPS and bandwidth ≥ 0.99×, server CPU per request ≤ 1.03×.
    Twin,
    /// The native `nbdkit` crate plugin: at least as fast (IOPS and bandwidth ≥ 1.00×).
    AtLeastAsFast,
    /// nbdkit's python plugin: ≥ 3.5× its 4K random-read IOPS.
    Python,
    /// Shown for information.
    None,
}

pub const TWIN_MIN: f64 = 0.99;
pub const TWIN_CPU_MAX: f64 = 1.03;
pub const PYTHON_MIN: f64 = 3.5;
pub const RSS_OVERHEAD_MAX_KIB: i64 = 4 * 1024;

pub struct Comparison {
    /// Short name, to find it.
    pub key: &'static str,
    /// What rustshim is compared with, as the tables and the chart say it.
    pub name: &'static str,
    pub shim: Kind,
    pub other: Kind,
    pub target: Target,
}

pub static COMPARISONS: &[Comparison] = &[
    // The noise floor: two identical servers, measured exactly as the real comparisons are.
    // Whatever their ratios stray from 1.000 is what the machine's load does on its own.
    Comparison {
        key: "control",
        name: "C null (A/A control: C null vs C null)",
        shim: Kind::CNull,
        other: Kind::CNull,
        target: Target::None,
    },
    Comparison {
        key: "null",
        name: "C null",
        shim: Kind::ShimNull,
        other: Kind::CNull,
        target: Target::Twin,
    },
    Comparison {
        key: "memory",
        name: "C memory",
        shim: Kind::ShimMemory,
        other: Kind::CMemory,
        target: Target::Twin,
    },
    // The filter shim: a Rust pass-through filter against nbdkit's C one, over the same plugin.
    Comparison {
        key: "filter",
        name: "C nofilter filter",
        shim: Kind::NullRustFilter,
        other: Kind::NullCFilter,
        target: Target::Twin,
    },
    Comparison {
        key: "file",
        name: "C file",
        shim: Kind::ShimFile,
        other: Kind::CFile,
        target: Target::None,
    },
    Comparison {
        key: "nbdkit crate",
        name: "nbdkit-crate ramdisk",
        shim: Kind::ShimMemory,
        other: Kind::Crate,
        target: Target::AtLeastAsFast,
    },
    Comparison {
        key: "python",
        name: "python ramdisk",
        shim: Kind::ShimMemory,
        other: Kind::Python,
        target: Target::Python,
    },
];

/// One fio workload.
pub struct Workload {
    /// Short name, to find it.
    pub key: &'static str,
    pub name: &'static str,
    pub rw: &'static str,
    pub bs: &'static str,
    pub iodepth: u32,
    /// fio jobs, each with its own NBD connection.
    pub jobs: u32,
    /// fio on one CPU and nbdkit on the others (see [`Placement`]); otherwise both may run
    /// anywhere and the kernel decides.
    ///
    /// [`Placement`]: super::placement::Placement
    pub pinned: bool,
}

pub static WORKLOADS: &[Workload] = &[
    Workload {
        key: RANDREAD,
        name: "4K random read, QD32",
        rw: "randread",
        bs: "4k",
        iodepth: 32,
        jobs: 1,
        pinned: true,
    },
    Workload {
        key: "randwrite",
        name: "4K random write, QD32",
        rw: "randwrite",
        bs: "4k",
        iodepth: 32,
        jobs: 1,
        pinned: true,
    },
    Workload {
        key: "read",
        name: "256K sequential read, QD8",
        rw: "read",
        bs: "256k",
        iodepth: 8,
        jobs: 1,
        pinned: true,
    },
    Workload {
        key: "write",
        name: "256K sequential write, QD8",
        rw: "write",
        bs: "256k",
        iodepth: 8,
        jobs: 1,
        pinned: true,
    },
    Workload {
        key: "randread-4conn",
        name: "4K random read, 4 connections × QD8",
        rw: "randread",
        bs: "4k",
        iodepth: 8,
        jobs: 4,
        pinned: true,
    },
    // The first workload with client and server sharing the CPUs as the kernel sees fit, as they
    // are where nbdkit is deployed: the python target is judged here (see `PYTHON_WORKLOAD`).
    Workload {
        key: PYTHON_WORKLOAD,
        name: "4K random read, QD32, unpinned",
        rw: "randread",
        bs: "4k",
        iodepth: 32,
        jobs: 1,
        pinned: false,
    },
    // The 4-connection one, unpinned. Here nbdkit's
    // 64 worker threads and fio's 4 compete for 2 CPUs, and throughput flips between a fast and
    // a slow mode with several times the context switches per request (C null too): shown for
    // what it tells about scheduling, judged by no target (see `Report::targets`).
    Workload {
        key: "randread-4conn-unpinned",
        name: "4K random read, 4 connections × QD8, unpinned",
        rw: "randread",
        bs: "4k",
        iodepth: 8,
        jobs: 4,
        pinned: false,
    },
];

/// 4K random reads at QD32, pinned: the warm-up, and the quick run's workload.
pub const RANDREAD: &str = "randread";
/// The workload the python target is judged on: 4K random reads at QD32, unpinned. Pinned to one
/// CPU, the comparison would take from rustshim the second CPU its requests can use in parallel
/// while costing python nothing (its requests take turns under the interpreter lock anyway), and
/// a GIL handed between threads on one CPU is cheaper than across two: the pinned ratio is in
/// the table, and the targets line gives both.
pub const PYTHON_WORKLOAD: &str = "randread-unpinned";

impl Workload {
    /// The workload named `key`.
    pub fn get(key: &str) -> &'static Workload {
        WORKLOADS
            .iter()
            .find(|w| w.key == key)
            .unwrap_or_else(|| panic!("no workload {key:?}"))
    }
}

/// What one run measures, and how often.
pub struct Settings {
    pub quick: bool,
    /// Interleaved pairs per cell.
    pub reps: usize,
    /// Seconds per fio run.
    pub runtime: u32,
    /// Interleaved pairs of start-up measurements per comparison.
    pub startup_reps: usize,
    pub comparisons: Vec<&'static Comparison>,
    pub workloads: Vec<&'static Workload>,
}

impl Settings {
    pub fn new(quick: bool) -> Settings {
        if quick {
            Settings {
                quick,
                reps: 2,
                runtime: 1,
                startup_reps: 2,
                comparisons: COMPARISONS.iter().filter(|c| c.key == "null").collect(),
                workloads: vec![
                    Workload::get(RANDREAD),
                    Workload::get("randread-4conn-unpinned"),
                ],
            }
        } else {
            Settings {
                quick,
                reps: 16,
                runtime: 1,
                startup_reps: 7,
                comparisons: COMPARISONS.iter().collect(),
                workloads: WORKLOADS.iter().collect(),
            }
        }
    }

    /// Whether some comparison of this run serves a disk this way.
    pub fn uses(&self, kind: Kind) -> bool {
        self.comparisons
            .iter()
            .any(|c| c.shim == kind || c.other == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_found() {
        // The report finds cells by these keys.
        for w in WORKLOADS {
            assert_eq!(Workload::get(w.key).name, w.name, "{}", w.key);
        }
        for (i, c) in COMPARISONS.iter().enumerate() {
            assert!(COMPARISONS[..i].iter().all(|d| d.key != c.key), "{}", c.key);
        }
        let quick = Settings::new(true);
        assert_eq!((quick.comparisons.len(), quick.workloads.len()), (1, 2));
        let full = Settings::new(false);
        assert_eq!(full.comparisons.len(), COMPARISONS.len());
        assert!(!Workload::get(PYTHON_WORKLOAD).pinned);
        assert!(Workload::get(RANDREAD).pinned);
    }
}
