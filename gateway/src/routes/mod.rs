//! HTTP handlers, one module per resource.

pub mod agents;
pub mod health;
pub mod users;
