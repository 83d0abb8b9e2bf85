//! HTTP handlers, one module per resource.

pub mod agents;
pub mod events;
pub mod health;
pub mod investment;
pub mod metrics_stream;
pub mod payments;
pub mod reports;
pub mod savings;
pub mod users;
pub mod webhooks;
