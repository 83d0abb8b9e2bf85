//! Timestamps for binds: the events' milliseconds as Postgres `timestamptz`.

pub fn millis_to_timestamp(ms: i64) -> sqlx::types::chrono::DateTime<sqlx::types::chrono::Utc> {
    sqlx::types::chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
