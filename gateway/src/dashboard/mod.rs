//! The web dashboard at `/dashboard`: one page, no build step, served from
//! the binary. It signs in with an API key (kept in the tab's
//! sessionStorage) and uses the same REST routes and WebSocket channel as
//! every client: agents with balances, limits and tags; the approvals queue;
//! payments with filters and exports; the savings vault with a projection.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("index.html");

/// `GET /dashboard`.
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page talks only to this origin.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:; img-src 'self' blob: data:",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        PAGE,
    )
}
