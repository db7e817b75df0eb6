//! The route table: every path the node serves and its methods, the one list that the
//! registrations of [`crate::http`] (transfers) and [`crate::ops`] (operations endpoints) take
//! their methods from, and that `httpd/openapi.json` is checked against. Below both: it knows
//! nothing of handlers.

use actix_web::http::Method;
use actix_web::{guard, web};

/// Every route the node serves and its methods. Registrations take their methods from here
/// ([`on`]), and a test checks `httpd/openapi.json` against this list and the app against it:
/// a new route is added here, in the registration and in the document.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/healthz", &["GET"]),
    ("/files", &["POST"]),
    ("/files/{path:.*}", &["GET", "HEAD", "OPTIONS"]),
    ("/upload/{path:.*}", &["GET", "HEAD", "OPTIONS", "PUT"]),
    ("/shares", &["POST"]),
    ("/status", &["GET"]),
    ("/status.html", &["GET"]),
    ("/readyz", &["GET"]),
    ("/metrics", &["GET"]),
    ("/openapi.json", &["GET"]),
];

/// The methods [`ROUTES`] lists for `path`. Panics if `path` is not listed (a programming
/// error, caught by any test that builds the app).
pub fn methods(path: &str) -> &'static [&'static str] {
    ROUTES
        .iter()
        .find(|(listed, _)| *listed == path)
        .map(|(_, methods)| *methods)
        .unwrap_or_else(|| panic!("{path} is not in route_table::ROUTES"))
}

/// A route taking the methods [`ROUTES`] lists for `path`, but `OPTIONS` (which only CORS
/// answers, where a resource has it: `http::with_cors`).
pub fn on(path: &str) -> actix_web::Route {
    web::route().guard(methods_of(path, |m| m != "OPTIONS"))
}

/// A guard for the methods of `path` in [`ROUTES`] that `keep` keeps.
pub fn methods_of(path: &str, keep: impl Fn(&str) -> bool) -> guard::AnyGuard {
    let mut kept = methods(path).iter().filter(|m| keep(m));
    let method =
        |name: &str| guard::Method(Method::from_bytes(name.as_bytes()).expect("a method name"));
    let first = kept
        .next()
        .unwrap_or_else(|| panic!("{path} lists no method"));
    kept.fold(guard::Any(method(first)), |any, name| any.or(method(name)))
}
