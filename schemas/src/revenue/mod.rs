//! The revenue platform's messages (API v1): opportunities, pricing quotes,
//! the revenue ledger and its analytics, the portfolio, the vertical agents.

pub mod analytics;
pub mod ledger;
pub mod opportunity;
pub mod portfolio;
pub mod pricing;
pub mod workers;

use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

/// The revenue machine's key of a tenant's ledger.
pub fn ledger_key(tenant: Uuid) -> Uuid {
    Uuid::new_v5(&tenant, b"revenue-ledger")
}

/// A time in the revenue API's answers: RFC 3339, milliseconds, UTC.
pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Serde: an amount as an exact JSON number (`#[serde(serialize_with)]`).
pub(crate) fn json_number<S: serde::Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    crate::money::json_number(*d).serialize(s)
}

/// Serde: an optional amount as an exact JSON number or null.
pub(crate) fn json_number_option<S: serde::Serializer>(
    d: &Option<Decimal>,
    s: S,
) -> Result<S::Ok, S::Error> {
    d.map(crate::money::json_number).serialize(s)
}
