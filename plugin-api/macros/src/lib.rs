//! The `#[plugin]` and `#[filter]` attributes of `rustshim-plugin-api`. Depend on
//! `rustshim-plugin-api`, which re-exports them, not on this crate.

use proc_macro::{Delimiter, Group, TokenStream, TokenTree};

/// Marks the `impl Plugin for T` block of a plugin and records which callbacks it defines.
///
/// The impl block is the one source of truth: the attribute adds a `CALLBACKS` constant listing
/// the methods written in it, and the shim treats every other callback as absent, exactly as
/// nbdkit treats a NULL callback of a C plugin.
#[proc_macro_attribute]
pub fn plugin(attr: TokenStream, item: TokenStream) -> TokenStream {
    record_callbacks(attr, item, "plugin", "Plugin")
}

/// Marks the `impl Filter for T` block of a filter and records which callbacks it defines, as
/// `#[plugin]` does: every other callback passes the call to the layer below, as nbdkit does for
/// a C filter that leaves it out. Without `open`, it writes one that opens the layer below
/// unchanged and makes the handle with `Default`.
#[proc_macro_attribute]
pub fn filter(attr: TokenStream, item: TokenStream) -> TokenStream {
    record_callbacks(attr, item, "filter", "Filter")
}

/// The shared work of both attributes: find the impl body, list its methods, and add the
/// `CALLBACKS` constant (numbered by the plugin's or the filter's callback table).
fn record_callbacks(
    attr: TokenStream,
    item: TokenStream,
    what: &str,
    trait_name: &str,
) -> TokenStream {
    if !attr.is_empty() {
        return compile_error(&format!("#[{what}] takes no arguments"));
    }
    let mut tokens: Vec<TokenTree> = item.into_iter().collect();
    let is_impl = tokens
        .iter()
        .any(|t| matches!(t, TokenTree::Ident(i) if i.to_string() == "impl"));
    let body_at = tokens
        .iter()
        .rposition(|t| matches!(t, TokenTree::Group(g) if g.delimiter() == Delimiter::Brace));
    let (true, Some(body_at)) = (is_impl, body_at) else {
        return compile_error(&format!(
            "#[{what}] goes on an `impl {trait_name} for YourType {{ ... }}` block"
        ));
    };
    let TokenTree::Group(body) = &tokens[body_at] else {
        unreachable!()
    };

    // Method names: an `fn` keyword followed by a name, at the top level of the impl body
    // (function bodies are nested groups, so nothing inside them is seen).
    let mut names = Vec::new();
    let items: Vec<TokenTree> = body.stream().into_iter().collect();
    for pair in items.windows(2) {
        if let (TokenTree::Ident(kw), TokenTree::Ident(name)) = (&pair[0], &pair[1]) {
            if kw.to_string() == "fn" {
                names.push(name.to_string());
            }
        }
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    let mut generated = match what {
        "filter" => format!(
            "#[doc(hidden)] const CALLBACKS: ::rustshim_plugin_api::Callbacks = \
             ::rustshim_plugin_api::Callbacks::in_table(\
             &::rustshim_plugin_api::abi::FILTER_CALLBACK_NAMES, &[{}]);",
            quoted.join(", ")
        ),
        _ => format!(
            "#[doc(hidden)] const CALLBACKS: ::rustshim_plugin_api::Callbacks = \
             ::rustshim_plugin_api::Callbacks::from_names(&[{}]);",
            quoted.join(", ")
        ),
    };
    if what == "filter" && !names.iter().any(|n| n == "open") {
        // Not recorded in CALLBACKS: the author did not write it.
        generated.push_str(
            "fn open(&self, next: &mut ::rustshim_plugin_api::filter::NextOpen<'_>, \
             readonly: bool, export_name: &str, _is_tls: bool) \
             -> ::rustshim_plugin_api::Result<Self::Handle> { \
             ::rustshim_plugin_api::filter::open_unchanged(next, readonly, export_name) }",
        );
    }
    let generated: TokenStream = generated.parse().expect("generated items parse");

    let mut new_body = body.stream();
    new_body.extend(generated);
    let mut group = Group::new(Delimiter::Brace, new_body);
    group.set_span(body.span());
    tokens[body_at] = TokenTree::Group(group);
    tokens.into_iter().collect()
}

fn compile_error(msg: &str) -> TokenStream {
    format!("compile_error!({msg:?});")
        .parse()
        .expect("compile_error parses")
}
