//! Every query the gateway runs against Postgres, one module per area, so
//! route handlers hold no SQL. Identity (users, keys, sessions) and the
//! revenue platform live here; the agent bank's handlers still hold their
//! own queries and move here as they are touched.

pub mod identity;
pub mod opportunities;
