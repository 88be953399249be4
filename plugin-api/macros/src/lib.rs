//! The `#[plugin]` attribute of `rustshim-plugin-api`. Depend on `rustshim-plugin-api`, which
//! re-exports it, not on this crate.

use proc_macro::{Delimiter, Group, TokenStream, TokenTree};

/// Marks the `impl Plugin for T` block of a plugin and records which callbacks it defines.
///
/// The impl block is the one source of truth: the attribute adds a `CALLBACKS` constant listing
/// the methods written in it, and the shim treats every other callback as absent, exactly as
/// nbdkit treats a NULL callback of a C plugin.
#[proc_macro_attribute]
pub fn plugin(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return compile_error("#[plugin] takes no arguments");
    }
    let mut tokens: Vec<TokenTree> = item.into_iter().collect();
    let is_impl = tokens
        .iter()
        .any(|t| matches!(t, TokenTree::Ident(i) if i.to_string() == "impl"));
    let body_at = tokens
        .iter()
        .rposition(|t| matches!(t, TokenTree::Group(g) if g.delimiter() == Delimiter::Brace));
    let (true, Some(body_at)) = (is_impl, body_at) else {
        return compile_error("#[plugin] goes on an `impl Plugin for YourType { ... }` block");
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
                names.push(format!("{:?}", name.to_string()));
            }
        }
    }
    let constant: TokenStream = format!(
        "#[doc(hidden)] const CALLBACKS: ::rustshim_plugin_api::Callbacks = \
         ::rustshim_plugin_api::Callbacks::from_names(&[{}]);",
        names.join(", ")
    )
    .parse()
    .expect("generated constant parses");

    let mut new_body = body.stream();
    new_body.extend(constant);
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
