//! The revenue platform's messages (API v1): opportunities first; pricing,
//! the revenue ledger and the portfolio join them here.

pub mod opportunity;
