//! stephost's end-to-end tests: the real binary on loopback, real components
//! built from `guests/`, real HTTP clients and sinks. One test binary (one
//! link step), one module per concern.

mod admin;
mod admission;
mod bookstore;
mod chain;
mod clients;
mod content_filter;
mod delivery;
mod events;
mod faults;
mod fleet;
mod fuzz_corpus;
mod guests;
mod hostile;
mod knative;
mod layout;
mod lifecycle;
mod manifests;
mod nn;
mod observability;
mod oci;
mod polyglot;
mod reload;
mod scaffold;
mod sentiment;
mod support;
mod tls;
mod versions;

/// Fails to compile when a guest in `guests/` has no test named after it in
/// `guests.rs`: every built guest must be exercised.
#[test]
fn every_built_guest_has_a_test() {
    macro_rules! has_test {
        ($guest:ident) => {
            let _ = guests::$guest;
        };
    }
    stephost::foreach_guest!(has_test);
}
