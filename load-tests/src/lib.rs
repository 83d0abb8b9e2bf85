//! Load generation and measurement for agentbank, over HTTP like any client.
//!
//! - [`client`]: the API calls a load run makes.
//! - [`workload`]: the operation mix and how each operation is performed.
//! - [`run`]: open- and closed-loop runs and the max-sustainable-rate search.
//! - [`report`]: latency histograms (HdrHistogram) and the final report.
//! - [`audit`]: the correctness audit every run ends with.
//! - [`baseline`]: the plain-Postgres ledger agentbank is compared against.
//! - [`chaos`]: a private stack whose roles are killed during load.

pub mod audit;
pub mod baseline;
pub mod chaos;
pub mod client;
pub mod report;
pub mod run;
pub mod workload;
