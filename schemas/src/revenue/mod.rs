//! The revenue platform's messages (API v1): opportunities, pricing quotes;
//! the revenue ledger and the portfolio join them here.

pub mod opportunity;
pub mod pricing;
