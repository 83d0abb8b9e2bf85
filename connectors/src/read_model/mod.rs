//! Every query the gateway runs against Postgres, one module per area, so
//! route handlers hold no SQL: they parse, authorise, call a function here
//! or send a command, and shape the answer. Each function scopes its query
//! to the tenant it is given.

pub mod agents;
pub mod chain;
pub mod events;
pub mod history;
pub mod identity;
pub mod ledger;
pub mod metrics;
pub mod opportunities;
pub mod payments;
pub mod portfolio;
pub mod quotes;
pub mod revenue;
pub mod savings;
pub mod webhooks;
pub mod workers;
