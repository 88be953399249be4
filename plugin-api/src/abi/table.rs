//! The machinery that turns one table of callbacks into everything derived from it.
//!
//! A root module (today [`PluginModule`](super::PluginModule); a filter's module would be a
//! second table) is written once, as a table macro that hands its own text to
//! [`callback_module!`]:
//!
//! ```ignore
//! macro_rules! plugin_module {
//!     ($($how:tt)*) => { $crate::abi::table::callback_module! { $($how)*
//!         /// docs
//!         pub struct PluginModule, names CALLBACK_NAMES, strs CALLBACK_NAME_STRS {
//!             /// A static fact.
//!             pub name: RStr<'static>,
//!         }
//!         callbacks {
//!             /// A callback: `[bit]`, or `[bit name]` where the field is named otherwise,
//!             /// then the field and its type in parentheses.
//!             [0 load] create: (extern "C" fn(..) -> i32),
//!             [2] config: (Option<unsafe extern "C" fn(..) -> i32>),
//!         }
//!     } };
//! }
//! plugin_module!(declare);             // the struct and its names, where the table is
//! plugin_module!(each some_macro);     // some_macro!(create, config, ...) anywhere else
//! ```
//!
//! * `declare` emits the `#[repr(C)]` `StableAbi` struct, its fields in table order (the ABI
//!   order: static facts first, then the callbacks), `NAMES: [&str; N]`, the callback names
//!   by bit number, and `STRS`, the same as ABI strings. Every bit from 0 to N-1 must be used exactly once: anything else does not
//!   compile.
//! * `each` calls another macro with the callbacks' field names, in table order: the adapter
//!   uses it to fill every field, so a callback added to the table cannot be left out there.
//!
//! Field types are written out in full, never as type aliases, and reach the derive as plain
//! tokens (hence the parentheses: a `$t:ty` fragment would reach it as one opaque group): the
//! `StableAbi` derive records a function pointer's signature only when it sees the `fn(..)`
//! type itself, and the recorded layout is what plugins already built are checked against.

/// See the [module documentation](self).
macro_rules! callback_module {
    (declare
        $(#[$meta:meta])*
        pub struct $module:ident, names $names:ident, strs $strs:ident { $($statics:tt)* }
        callbacks {
            $($(#[$cmeta:meta])* [$bit:literal $($name:ident)?] $field:ident: ($($cty:tt)*),)*
        }
    ) => {
        #[repr(C)]
        #[derive(StableAbi)]
        $(#[$meta])*
        pub struct $module {
            $($statics)*
            $($(#[$cmeta])* pub $field: $($cty)*,)*
        }

        /// The names of the callbacks, by bit number (see the table that declares the module).
        /// Bit numbers are append-only.
        pub const $names: [&str; [$($bit),*].len()] =
            $crate::abi::table::by_bit([$(($bit, $crate::abi::table::callback_module!(@name $field $($name)?))),*]);

        /// The same names as ABI strings, for the module's `callback_names`.
        pub static $strs: [RStr<'static>; $names.len()] = $crate::abi::table::as_rstrs($names);
    };
    (each $then:ident
        $(#[$meta:meta])*
        pub struct $module:ident, names $names:ident, strs $strs:ident { $($statics:tt)* }
        callbacks {
            $($(#[$cmeta:meta])* [$bit:literal $($name:ident)?] $field:ident: ($($cty:tt)*),)*
        }
    ) => {
        $then!($($field),*)
    };
    (@name $field:ident) => { stringify!($field) };
    (@name $field:ident $name:ident) => { stringify!($name) };
}
pub(crate) use callback_module;

use super::RStr;

/// The names as ABI strings.
pub const fn as_rstrs<const N: usize>(names: [&'static str; N]) -> [RStr<'static>; N] {
    let mut out = [RStr::from_str(""); N];
    let mut i = 0;
    while i < N {
        out[i] = RStr::from_str(names[i]);
        i += 1;
    }
    out
}

/// Places each `(bit, name)` at its bit. Evaluated at compile time: a bit out of range or used
/// twice stops the build.
pub const fn by_bit<const N: usize>(entries: [(usize, &'static str); N]) -> [&'static str; N] {
    let mut names = [""; N];
    let mut i = 0;
    while i < N {
        let (bit, name) = entries[i];
        assert!(
            bit < N,
            "a callback bit number is out of range: bits are 0 to N-1"
        );
        assert!(
            names[bit].is_empty(),
            "two callbacks have the same bit number"
        );
        names[bit] = name;
        i += 1;
    }
    names
}
