//! Request bodies: parsed as JSON into a `serde_json::Value` (numbers kept as
//! their exact text), then read field by field with bounds, so every mistake
//! gets a precise message in the API's format and amounts never pass through
//! `f64`. And query strings ([`Query`]), refused in the same format.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::error::ApiError;
use schemas::money;

/// Largest request body accepted, in bytes.
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// Longest free-text field (descriptions).
pub const TEXT_CHARS_MAX: usize = 1_000;
/// Longest name-like field.
pub const NAME_CHARS_MAX: usize = 100;
/// Longest currency code accepted.
pub const CURRENCY_CHARS_MAX: usize = 10;
/// The currency an amount is in unless the request names one.
pub const DEFAULT_CURRENCY: &str = "USDC";

/// Query parameters; a query string that does not parse is a 400 in the
/// API's error format (axum's own extractor answers plain text).
pub struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S>
    for Query<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| Query(q))
            .map_err(|e| ApiError::BadRequest(format!("Invalid query string: {}", e.body_text())))
    }
}

/// A JSON object body.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "Content-Type must be application/json".into(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(format!(
                        "Request body exceeds {BODY_BYTES_MAX} bytes"
                    ))
                } else {
                    ApiError::BadRequest("Could not read the request body".into())
                }
            })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(_) => Err(ApiError::BadRequest(
                "Request body must be a JSON object".into(),
            )),
            Err(e) => Err(ApiError::BadRequest(format!("Malformed JSON: {e}"))),
        }
    }
}

/// A JSON object body that may be absent altogether (no body, no
/// Content-Type); present, it is read as [`JsonObject`].
pub struct MaybeJsonObject(pub Option<JsonObject>);

impl<S: Send + Sync> FromRequest<S> for MaybeJsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let h = req.headers();
        let empty = !h.contains_key(header::CONTENT_TYPE)
            && h.get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v.trim() == "0")
            && !h.contains_key(header::TRANSFER_ENCODING);
        if empty {
            return Ok(MaybeJsonObject(None));
        }
        Ok(MaybeJsonObject(Some(
            JsonObject::from_request(req, state).await?,
        )))
    }
}

fn bad(msg: String) -> ApiError {
    ApiError::BadRequest(msg)
}

/// Whether text can be stored: Postgres `text` and `jsonb` hold no NUL
/// character, so one would fail the write — or, on an event, the sink.
pub fn storable(text: &str) -> bool {
    !text.contains('\0')
}

impl JsonObject {
    fn present(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn has(&self, name: &str) -> bool {
        self.present(name).is_some()
    }

    /// A string of 1..=max_chars characters (trimmed), if present.
    pub fn opt_str(&self, name: &str, max_chars: usize) -> Result<Option<String>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::String(s)) => {
                let s = s.trim();
                if s.chars().count() > max_chars {
                    return Err(bad(format!(
                        "{name} must be at most {max_chars} characters"
                    )));
                }
                if !storable(s) {
                    return Err(bad(format!("{name} must not contain NUL characters")));
                }
                Ok(Some(s.to_string()))
            }
            Some(_) => Err(bad(format!("{name} must be a string"))),
        }
    }

    /// A required non-empty string.
    pub fn str(&self, name: &str, max_chars: usize, missing: &str) -> Result<String, ApiError> {
        match self.opt_str(name, max_chars)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(bad(missing.to_string())),
        }
    }

    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(bad(format!("{name} must be a boolean"))),
        }
    }

    /// The `currency` field: the default when absent, upper-cased, and one
    /// the bank holds (400 naming the supported ones otherwise).
    pub fn currency(&self) -> Result<String, ApiError> {
        let currency = self
            .opt_str("currency", CURRENCY_CHARS_MAX)?
            .unwrap_or_else(|| DEFAULT_CURRENCY.into())
            .to_ascii_uppercase();
        if money::currency_scale(&currency).is_none() {
            return Err(ApiError::BadRequest(format!(
                "Unsupported currency '{currency}'; supported: {DEFAULT_CURRENCY}"
            )));
        }
        Ok(currency)
    }

    /// `name` as a positive amount of `currency` within its scale; anything
    /// else (absent, not a number, zero, too precise) is `invalid`.
    pub fn positive_amount(
        &self,
        name: &str,
        currency: &str,
        invalid: &str,
    ) -> Result<Decimal, ApiError> {
        self.opt_amount(name)
            .ok()
            .flatten()
            .and_then(|a| money::validate_positive(a, currency).ok())
            .ok_or_else(|| ApiError::BadRequest(invalid.into()))
    }

    /// An amount given as a JSON number or a decimal string, parsed exactly.
    pub fn opt_amount(&self, name: &str) -> Result<Option<Decimal>, ApiError> {
        let text = match self.present(name) {
            None => return Ok(None),
            // With serde_json's arbitrary_precision, a Number prints its source text.
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(bad(format!("{name} must be a number"))),
        };
        money::parse_exact(&text)
            .map(Some)
            .map_err(|_| bad(format!("{name} must be a number")))
    }

    /// A list of at most `max_items` strings of at most `max_chars` each.
    pub fn opt_strings(
        &self,
        name: &str,
        max_items: usize,
        max_chars: usize,
    ) -> Result<Vec<String>, ApiError> {
        match self.present(name) {
            None => Ok(vec![]),
            Some(Value::Array(items)) => {
                if items.len() > max_items {
                    return Err(bad(format!("{name} may have at most {max_items} items")));
                }
                items
                    .iter()
                    .map(|v| match v {
                        Value::String(s)
                            if !s.trim().is_empty()
                                && s.chars().count() <= max_chars
                                && storable(s) =>
                        {
                            Ok(s.trim().to_string())
                        }
                        _ => Err(bad(format!(
                            "{name} must be non-empty strings of at most {max_chars} characters, without NUL"
                        ))),
                    })
                    .collect()
            }
            Some(_) => Err(bad(format!("{name} must be an array of strings"))),
        }
    }
}

pub use schemas::money::json_number as number;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_never_reach_postgres() {
        let body = JsonObject(
            serde_json::json!({"name": "a\u{0}b", "tags": ["ok", "x\u{0}"], "fine": "a\nb"})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert!(body.opt_str("name", 100).is_err());
        assert!(body.opt_strings("tags", 5, 50).is_err());
        assert_eq!(body.opt_str("fine", 100).unwrap().as_deref(), Some("a\nb"));
    }
}
