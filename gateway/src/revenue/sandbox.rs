//! Sandbox test ids, for `test_sk_` keys on every revenue route that takes
//! an id: `test_success_*` always succeeds, `test_fail_*` always answers a
//! documented failure result (never a 5xx), `test_error_{status}_*` answers
//! that status in the error envelope. Live credentials get no test ids.

use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::tenant::Mode;

/// The outcome a test id asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestId {
    Success,
    Fail,
}

/// `None`: not a test id (or not a sandbox caller); else the outcome asked
/// for, or the error to answer.
pub fn test_id(caller: &Caller, id: &str) -> Option<Result<TestId, ApiError>> {
    if caller.mode != Mode::Test {
        return None;
    }
    if let Some(rest) = id.strip_prefix("test_error_") {
        let status = rest
            .split('_')
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (400..=599).contains(s));
        return Some(Err(match status {
            Some(status) => ApiError::Status {
                status,
                message: format!("Simulated error {status} for test id {id}"),
            },
            None => ApiError::Validation {
                message: "test_error_ ids name a status from 400 to 599: test_error_{status}_…"
                    .into(),
                details: json!({"field": "id"}),
            },
        }));
    }
    if id.starts_with("test_success_") {
        Some(Ok(TestId::Success))
    } else if id.starts_with("test_fail_") {
        Some(Ok(TestId::Fail))
    } else {
        None
    }
}
