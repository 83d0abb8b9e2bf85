//! The revenue platform's HTTP handlers (API v1), one module per resource:
//! webhooks, the WebSocket event channel and the SSE metrics stream (shared
//! with the agent bank, whose events they also carry), and the revenue
//! resources. Errors answer the envelope `{"error": {code, message, ...}}`.

pub mod agents;
pub mod events;
pub mod fields;
pub mod ledger;
pub mod metrics_stream;
pub mod openapi;
pub mod opportunities;
pub mod portfolio;
pub mod pricing;
pub mod sandbox;
pub mod schema;
pub mod webhooks;
