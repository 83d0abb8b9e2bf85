//! The gateway's one error type, mapped to HTTP in one place, with the two
//! documented response shapes chosen by route, never by re-reading a body:
//!
//! - agent-bank routes: `{"error": "<message>"}` (the Mage format);
//! - revenue routes (API v1): `{"error": {code, message, details,
//!   request_id, timestamp}}` with the seed's codes.
//!
//! An error becomes a response in the bank's shape and carries itself in the
//! response's extensions; the revenue routes' [`envelope`] layer rewrites
//! such responses into the envelope. Every response carries `X-Request-Id`
//! ([`request_id`]), equal to the envelope's `request_id`; internal detail
//! goes to the log under that id and never to the client.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// A bad request with machine-readable details (revenue routes show them).
    #[error("{message}")]
    Validation { message: String, details: Value },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A named resource that does not exist (or is not the caller's).
    #[error("{} {resource_id} does not exist", capitalised(resource_type))]
    ResourceNotFound {
        resource_type: &'static str,
        resource_id: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("Rate limit exceeded; retry after the time in Retry-After")]
    RateLimited { retry_after_s: u64 },
    /// A chosen status with its message (the sandbox's `test_error_{code}_*`).
    #[error("{message}")]
    Status { status: u16, message: String },
    /// A dependency (broker, processor, Postgres) did not answer in time.
    #[error("{0}")]
    Unavailable(String),
    /// Details are logged, never shown.
    #[error("Internal server error")]
    Internal(String),
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Validation { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::ResourceNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Status { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The revenue API's error code (the seed's table, plus the statuses it
    /// does not name).
    pub fn code(&self) -> &'static str {
        match self.status().as_u16() {
            400 => "VALIDATION_ERROR",
            401 => "UNAUTHORIZED",
            403 => "FORBIDDEN",
            404 => "RESOURCE_NOT_FOUND",
            405 => "METHOD_NOT_ALLOWED",
            409 => "CONFLICT",
            413 => "PAYLOAD_TOO_LARGE",
            415 => "UNSUPPORTED_MEDIA_TYPE",
            422 => "UNPROCESSABLE_ENTITY",
            429 => "RATE_LIMIT_EXCEEDED",
            503 => "SERVICE_UNAVAILABLE",
            s if s >= 500 => "INTERNAL_ERROR",
            _ => "REQUEST_FAILED",
        }
    }

    /// The envelope's `details`.
    pub fn details(&self) -> Value {
        match self {
            ApiError::Validation { details, .. } => details.clone(),
            ApiError::ResourceNotFound {
                resource_type,
                resource_id,
            } => json!({"resource_type": resource_type, "resource_id": resource_id}),
            ApiError::RateLimited { retry_after_s } => json!({"retry_after": retry_after_s}),
            _ => json!({}),
        }
    }

    /// The revenue API's error body.
    pub fn envelope(&self, request_id: &str) -> Value {
        json!({"error": {
            "code": self.code(),
            "message": self.to_string(),
            "details": self.details(),
            "request_id": request_id,
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(detail = %detail, "internal error");
        }
        let status = self.status();
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        if let ApiError::RateLimited { retry_after_s } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response.extensions_mut().insert(Arc::new(self));
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => {
                ApiError::Unavailable("Database unavailable".into())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<connectors::ConnectorError> for ApiError {
    fn from(e: connectors::ConnectorError) -> Self {
        match e {
            connectors::ConnectorError::Postgres(e) => e.into(),
            other => {
                tracing::warn!(error = %other, "dependency failed");
                ApiError::Unavailable("Service temporarily unavailable".into())
            }
        }
    }
}

/// A request's id: `req_` and 20 random base58 characters.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Gives every request an id (in its extensions, in the log span, and as the
/// response's `X-Request-Id`).
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = RequestId(format!(
        "req_{}",
        bs58::encode(rand::random::<[u8; 15]>()).into_string()
    ));
    req.extensions_mut().insert(id.clone());
    let span = tracing::info_span!("request", request_id = %id.0);
    let mut response = tracing::Instrument::instrument(next.run(req), span).await;
    if let Ok(v) = HeaderValue::from_str(&id.0) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// The revenue routes' layer: errors answer the envelope.
pub async fn envelope(req: Request, next: Next) -> Response {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let response = next.run(req).await;
    let status = response.status();
    let error = match response.extensions().get::<Arc<ApiError>>().cloned() {
        Some(error) => error,
        None if status.is_client_error() || status.is_server_error() => {
            // Not ours: an extractor's rejection (bad query string, path
            // segment, method) — plain text about the request, kept as the message.
            let (parts, body) = response.into_parts();
            let text = axum::body::to_bytes(body, 1024).await.unwrap_or_default();
            let message = String::from_utf8_lossy(&text).trim().to_string();
            let message = if message.is_empty() || status.is_server_error() {
                status.canonical_reason().unwrap_or("Error").to_string()
            } else {
                message
            };
            let rebuilt = Response::from_parts(parts, axum::body::Body::empty());
            let error = ApiError::Status {
                status: status.as_u16(),
                message,
            };
            return finish(rebuilt, &error, &request_id);
        }
        None => return response,
    };
    finish(response, &error, &request_id)
}

/// `response` with `error`'s envelope as its body (status and headers kept).
fn finish(response: Response, error: &ApiError, request_id: &str) -> Response {
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut rebuilt = Json(error.envelope(request_id)).into_response();
    *rebuilt.status_mut() = parts.status;
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE {
            rebuilt.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rebuilt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_seed_table() {
        let nf = ApiError::ResourceNotFound {
            resource_type: "opportunity",
            resource_id: "opp_1".into(),
        };
        assert_eq!(nf.code(), "RESOURCE_NOT_FOUND");
        assert_eq!(nf.to_string(), "Opportunity opp_1 does not exist");
        assert_eq!(nf.details()["resource_id"], "opp_1");
        assert_eq!(ApiError::BadRequest("x".into()).code(), "VALIDATION_ERROR");
        assert_eq!(
            ApiError::RateLimited { retry_after_s: 3 }.code(),
            "RATE_LIMIT_EXCEEDED"
        );
        assert_eq!(
            ApiError::Internal("secret detail".into()).to_string(),
            "Internal server error"
        );
        assert_eq!(
            ApiError::Status {
                status: 402,
                message: "x".into()
            }
            .status(),
            StatusCode::PAYMENT_REQUIRED
        );
    }
}
