//! Load generation and measurement for agentbank, over HTTP like any client.
//!
//! - [`client`]: the few API calls a load run needs (sign-up, agents, deposits).
//! - [`report`]: latency histograms (HdrHistogram) and the final report.
//! - [`audit`]: the correctness audit every run ends with.

pub mod audit;
pub mod client;
pub mod report;
