//! The compile errors of the `#[plugin]` and `#[filter]` attributes, as an author sees them:
//! each case in `tests/ui/` must fail to build with exactly the checked-in `.stderr`
//! (regenerate with `TRYBUILD=overwrite cargo test -p rustshim-plugin-api --test macro_errors`
//! and review the diff).

#[test]
fn attribute_misuse_is_a_compile_error_that_says_what_to_do() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
