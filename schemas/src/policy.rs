//! Spending policies beyond an agent's payment rules, enforced by its
//! processor: amount caps per UTC hour, ISO week (Monday 00:00 UTC) and
//! calendar month; a cap on the number of payments per hour and per day
//! (velocity); recipient allow and block lists; and an expiry for payments
//! waiting for the user's approval. Caps are hard: a payment (or an
//! approval) that would pass one is refused, so no approved spending in a
//! window ever exceeds its cap. Windows are calendar windows by the
//! command's time, so replays decide the same.

use chrono::{DateTime, Datelike};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Most entries of an allow or block list.
pub const LIST_MAX: usize = 50;
/// Longest list entry (an agent id or a 0x address).
pub const ENTRY_CHARS_MAX: usize = 100;
/// Longest approval expiry: 30 days.
pub const EXPIRY_MINUTES_MAX: u32 = 43_200;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// An agent's spending policies; every one optional (`None`/empty: none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpendingPolicies {
    #[serde(with = "rust_decimal::serde::str_option")]
    pub hourly_limit: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub weekly_limit: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub monthly_limit: Option<Decimal>,
    pub max_payments_per_hour: Option<u32>,
    pub max_payments_per_day: Option<u32>,
    /// When not empty, payments go only to these (agent ids or addresses).
    pub allowed_recipients: Vec<String>,
    pub blocked_recipients: Vec<String>,
    /// A payment waiting for approval longer than this is declined as
    /// `Expired` and its hold released (at the scheduler's next tick).
    pub approval_expiry_minutes: Option<u32>,
}

impl SpendingPolicies {
    /// Parses and checks the JSON form (`UpdateAgent`'s `policies` value):
    /// caps non-negative with at most 6 decimals, lists bounded, entries
    /// normalised (trimmed, lower-case), no entry both allowed and blocked.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = |e: serde_json::Error| format!("Invalid spending policies: {e}");
        let value: serde_json::Value = serde_json::from_str(text).map_err(invalid)?;
        if !value.is_object() {
            return Err("Spending policies are an object".into());
        }
        let mut p: SpendingPolicies = serde_json::from_value(value).map_err(invalid)?;
        for (name, cap) in [
            ("hourly_limit", p.hourly_limit),
            ("weekly_limit", p.weekly_limit),
            ("monthly_limit", p.monthly_limit),
        ] {
            if cap.is_some_and(|c| c.is_sign_negative() || c.normalize().scale() > 6) {
                return Err(format!(
                    "{name} must be a non-negative amount with at most 6 decimals"
                ));
            }
        }
        for list in [&mut p.allowed_recipients, &mut p.blocked_recipients] {
            if list.len() > LIST_MAX {
                return Err(format!("A recipient list holds at most {LIST_MAX} entries"));
            }
            for e in list.iter_mut() {
                *e = e.trim().to_ascii_lowercase();
                if e.is_empty() || e.len() > ENTRY_CHARS_MAX || e.chars().any(char::is_control) {
                    return Err(format!(
                        "Recipients are agent ids or addresses of 1 to {ENTRY_CHARS_MAX} characters"
                    ));
                }
            }
            list.sort();
            list.dedup();
        }
        if p.allowed_recipients
            .iter()
            .any(|a| p.blocked_recipients.contains(a))
        {
            return Err("A recipient cannot be both allowed and blocked".into());
        }
        if p.approval_expiry_minutes
            .is_some_and(|m| m == 0 || m > EXPIRY_MINUTES_MAX)
        {
            return Err(format!(
                "approval_expiry_minutes must be 1 to {EXPIRY_MINUTES_MAX}"
            ));
        }
        Ok(p)
    }

    /// The canonical JSON form.
    pub fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Why `recipient` (an agent id or address, any case) is refused, if it is.
    pub fn refuses(&self, recipient: &str) -> Option<&'static str> {
        let r = recipient.trim().to_ascii_lowercase();
        if self.blocked_recipients.contains(&r) {
            return Some("Recipient is blocked by the sender agent's spending policy");
        }
        if !self.allowed_recipients.is_empty() && !self.allowed_recipients.contains(&r) {
            return Some("Recipient is not on the sender agent's allow list");
        }
        None
    }
}

/// Calendar windows of an instant: (UTC hour, UTC day, ISO week, month).
pub fn windows(at_ms: i64) -> (i64, i64, i64, i64) {
    let day = at_ms.div_euclid(DAY_MS);
    // 1970-01-01 was a Thursday: Monday-based weeks start 3 days earlier.
    let week = (day + 3).div_euclid(7);
    let month = DateTime::from_timestamp_millis(at_ms)
        .map_or(0, |t| t.year() as i64 * 12 + t.month0() as i64);
    (at_ms.div_euclid(HOUR_MS), day, week, month)
}

/// What an agent has spent in the current windows (approved payments).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowSpend {
    pub hour: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub hour_amount: Decimal,
    pub hour_count: u32,
    pub day: i64,
    pub day_count: u32,
    pub week: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub week_amount: Decimal,
    pub month: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub month_amount: Decimal,
}

impl WindowSpend {
    /// Starts the windows of `at_ms` that have moved on.
    pub fn roll(&mut self, at_ms: i64) {
        let (hour, day, week, month) = windows(at_ms);
        if hour != self.hour {
            (self.hour, self.hour_amount, self.hour_count) = (hour, Decimal::ZERO, 0);
        }
        if day != self.day {
            (self.day, self.day_count) = (day, 0);
        }
        if week != self.week {
            (self.week, self.week_amount) = (week, Decimal::ZERO);
        }
        if month != self.month {
            (self.month, self.month_amount) = (month, Decimal::ZERO);
        }
    }

    /// Why spending `amount` now would pass a cap, if it would (after `roll`).
    pub fn refuses(&self, p: &SpendingPolicies, amount: Decimal) -> Option<&'static str> {
        if p.hourly_limit
            .is_some_and(|c| self.hour_amount + amount > c)
        {
            return Some("Payment exceeds the sender agent's hourly limit");
        }
        if p.weekly_limit
            .is_some_and(|c| self.week_amount + amount > c)
        {
            return Some("Payment exceeds the sender agent's weekly limit");
        }
        if p.monthly_limit
            .is_some_and(|c| self.month_amount + amount > c)
        {
            return Some("Payment exceeds the sender agent's monthly limit");
        }
        if p.max_payments_per_hour
            .is_some_and(|n| self.hour_count >= n)
        {
            return Some("The sender agent has made its most payments for this hour");
        }
        if p.max_payments_per_day.is_some_and(|n| self.day_count >= n) {
            return Some("The sender agent has made its most payments for this day");
        }
        None
    }

    /// Counts an approved payment.
    pub fn add(&mut self, amount: Decimal) {
        self.hour_amount += amount;
        self.hour_count += 1;
        self.day_count += 1;
        self.week_amount += amount;
        self.month_amount += amount;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_normalise_and_refuse_nonsense() {
        let p = SpendingPolicies::parse(
            r#"{"hourly_limit":"10","allowed_recipients":[" 0xAB ","0xab"],"max_payments_per_day":3}"#,
        )
        .unwrap();
        assert_eq!(p.allowed_recipients, ["0xab"]);
        assert_eq!(p.refuses("0xAB"), None);
        assert!(p.refuses("0xcd").is_some());
        assert_eq!(SpendingPolicies::parse(&p.text()).unwrap(), p);
        for bad in [
            r#"{"hourly_limit":"-1"}"#,
            r#"{"hourly_limit":"0.0000001"}"#,
            r#"{"colour":1}"#,
            r#"{"approval_expiry_minutes":0}"#,
            r#"{"allowed_recipients":["a"],"blocked_recipients":["A"]}"#,
            r#"[]"#,
        ] {
            assert!(SpendingPolicies::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn windows_are_calendar_windows() {
        // 2024-01-01 was a Monday: a new ISO week starts at its midnight.
        let monday = 1_704_067_200_000;
        let (h, d, w, m) = windows(monday);
        let (h2, d2, w2, m2) = windows(monday - 1);
        assert_eq!((h - h2, d - d2, w - w2, m - m2), (1, 1, 1, 1));
        let (_, _, w3, _) = windows(monday + 6 * DAY_MS + DAY_MS - 1);
        assert_eq!(w3, w);
    }

    #[test]
    fn caps_and_velocity_refuse_what_would_pass_them() {
        let p = SpendingPolicies {
            hourly_limit: Some(Decimal::from(10)),
            max_payments_per_hour: Some(2),
            ..Default::default()
        };
        let mut s = WindowSpend::default();
        s.roll(0);
        assert_eq!(s.refuses(&p, Decimal::from(10)), None);
        assert!(s.refuses(&p, Decimal::from(11)).is_some());
        s.add(Decimal::from(4));
        s.add(Decimal::from(4));
        assert!(s.refuses(&p, Decimal::from(1)).is_some(), "velocity");
        s.roll(HOUR_MS);
        assert_eq!(s.refuses(&p, Decimal::from(10)), None, "a new hour");
    }
}
