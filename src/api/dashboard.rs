//! The dashboard's files, embedded in the binary: `clients/web/dist/`, built from
//! `clients/web/src/` and checked in (`scripts/check-dashboard` fails when a rebuild
//! differs), so a fresh clone serves it with no npm step. The page talks to the server only
//! through grpc-web, like any other client; these routes serve nothing but its files.
//!
//! The page drives agents that have a shell, so it is served locked down: a
//! Content-Security-Policy that runs only its own script (no inline script, no `eval`),
//! connects only to this origin and may not be framed (clickjacking), `nosniff`, and
//! `X-Frame-Options` for browsers older than `frame-ancestors`.

use axum::{
    http::{HeaderName, HeaderValue, header},
    response::{IntoResponse, Response},
};

/// What the page may load and do.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const INDEX: &[u8] = include_bytes!("../../clients/web/dist/index.html");
const SCRIPT: &[u8] = include_bytes!("../../clients/web/dist/app.js");
const STYLE: &[u8] = include_bytes!("../../clients/web/dist/app.css");

/// One file of the page, with the headers every one of them carries.
fn file(content_type: &'static str, body: &'static [u8]) -> Response {
    let headers: [(HeaderName, HeaderValue); 6] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        // A new binary may carry a new page: always ask again (the files are small).
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body).into_response()
}

/// `GET /`: the page.
pub async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX)
}

/// `GET /assets/app.js`: its script, every view.
pub async fn script() -> Response {
    file("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /assets/app.css`: its style sheet.
pub async fn style() -> Response {
    file("text/css; charset=utf-8", STYLE)
}
