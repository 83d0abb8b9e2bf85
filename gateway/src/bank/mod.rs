//! The agent bank's HTTP handlers (the Mage API), one module per resource.
//! Errors answer `{"error": "..."}`.

pub mod agents;
pub mod history;
pub mod investment;
pub mod lifecycle;
pub mod payments;
pub mod reports;
pub mod savings;
pub mod users;
