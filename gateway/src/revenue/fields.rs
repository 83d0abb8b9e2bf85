//! Reading the revenue API's JSON bodies field by field, each mistake named
//! by its path in a `VALIDATION_ERROR` (`details.field`): bounded texts
//! without control characters, exact decimals, ranged numbers, nested
//! objects, and refusing unknown fields.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::error::ApiError;

/// Longest item of a list of labels.
pub const LABEL_CHARS_MAX: usize = 50;
/// Most items of a list of labels.
pub const LIST_ITEMS_MAX: usize = 20;

pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::Validation {
        message: message.into(),
        details: json!({ "field": field }),
    }
}

/// Reads one JSON object's fields, naming each by its path in errors.
pub struct Fields<'a> {
    pub map: &'a Map<String, Value>,
    pub path: &'a str,
}

impl<'a> Fields<'a> {
    /// A body's top-level fields.
    pub fn root(map: &'a Map<String, Value>) -> Self {
        Fields { map, path: "" }
    }

    pub fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        let unknown: Vec<&String> = self
            .map
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .collect();
        match unknown.first() {
            None => Ok(()),
            Some(k) => Err(ApiError::Validation {
                message: format!("Unknown field {}", self.name(k)),
                details: json!({"field": self.name(k), "allowed": allowed}),
            }),
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn text(&self, key: &str, max: usize) -> Result<Option<String>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => {
                let s = s.trim();
                let n = s.chars().count();
                if n == 0 || n > max || s.chars().any(char::is_control) {
                    return Err(invalid(
                        &self.name(key),
                        format!(
                            "{} must be 1 to {max} characters, without control characters",
                            self.name(key)
                        ),
                    ));
                }
                Ok(Some(s.to_string()))
            }
            Some(_) => Err(invalid(
                &self.name(key),
                format!("{} must be a string", self.name(key)),
            )),
        }
    }

    pub fn texts(&self, key: &str) -> Result<Vec<String>, ApiError> {
        let name = self.name(key);
        match self.get(key) {
            None => Ok(vec![]),
            Some(Value::Array(items)) if items.len() <= LIST_ITEMS_MAX => items
                .iter()
                .map(|v| match v.as_str().map(str::trim) {
                    Some(s)
                        if !s.is_empty()
                            && s.chars().count() <= LABEL_CHARS_MAX
                            && !s.chars().any(char::is_control) =>
                    {
                        Ok(s.to_string())
                    }
                    _ => Err(invalid(
                        &name,
                        format!(
                            "{name} items must be strings of 1 to {LABEL_CHARS_MAX} characters"
                        ),
                    )),
                })
                .collect(),
            Some(_) => Err(invalid(
                &name,
                format!("{name} must be an array of at most {LIST_ITEMS_MAX} strings"),
            )),
        }
    }

    /// A number read by `read`, which refuses what is out of range.
    pub fn number<T>(
        &self,
        key: &str,
        range: &str,
        read: impl Fn(&serde_json::Number) -> Option<T>,
    ) -> Result<Option<T>, ApiError> {
        let name = self.name(key);
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => read(n)
                .map(Some)
                .ok_or_else(|| invalid(&name, format!("{name} must be {range}"))),
            Some(_) => Err(invalid(&name, format!("{name} must be a number"))),
        }
    }

    /// An exact number (its JSON text, never through `f64`).
    pub fn decimal(&self, key: &str, max: i64) -> Result<Option<Decimal>, ApiError> {
        self.number(key, &format!("a number from 0 to {max}"), |n| {
            let text = n.to_string();
            Decimal::from_str(&text)
                .or_else(|_| Decimal::from_scientific(&text))
                .ok()
                .filter(|d| *d >= Decimal::ZERO && *d <= Decimal::from(max))
        })
    }

    pub fn rate(&self, key: &str, lo: f64, hi: f64) -> Result<Option<f64>, ApiError> {
        // `+ 0.0`: a negative zero would not read back from jsonb as given.
        self.number(key, &format!("a number from {lo} to {hi}"), |n| {
            n.as_f64()
                .filter(|x| x.is_finite() && (lo..=hi).contains(x))
                .map(|x| x + 0.0)
        })
    }

    pub fn int(&self, key: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
        self.number(key, &format!("a whole number from {lo} to {hi}"), |n| {
            n.as_i64().filter(|x| (lo..=hi).contains(x))
        })
    }

    pub fn object(&self, key: &'a str) -> Result<Option<Fields<'a>>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Fields { map, path: key })),
            Some(_) => Err(invalid(
                &self.name(key),
                format!("{} must be an object", self.name(key)),
            )),
        }
    }
}
