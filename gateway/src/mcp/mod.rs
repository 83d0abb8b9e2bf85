//! MCP (Model Context Protocol) access to the agent bank, with the official
//! Rust SDK (`rmcp`): Streamable HTTP at `/mcp` on the gateway, and stdio
//! (`agentbank mcp`) for desktop clients. Every tool is one or two requests
//! to the bank's own REST routes, made with the caller's API key — in
//! process on the gateway, over HTTP from stdio — so spending rules,
//! idempotency and scoping are exactly the REST API's, and a refusal comes
//! back as a tool error carrying the API's message.

pub mod tools;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request};
use futures::future::BoxFuture;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler};
use serde_json::Value;
use tower::ServiceExt;

use tools::{ApiCall, Plan};

/// Largest API answer a tool passes on (bytes).
const ANSWER_BYTES_MAX: usize = 1 << 20;

/// Sends a tool's REST request with a key: the status and JSON body.
pub trait Backend: Send + Sync + 'static {
    fn send(&self, call: ApiCall, key: String) -> BoxFuture<'_, Result<(u16, Value), String>>;
}

/// The gateway's own router, called in process.
pub struct InProcess(pub axum::Router);

impl Backend for InProcess {
    fn send(&self, call: ApiCall, key: String) -> BoxFuture<'_, Result<(u16, Value), String>> {
        Box::pin(async move {
            let mut request = Request::builder()
                .method(call.method)
                .uri(&call.path)
                .header("x-api-key", key);
            if let Some(k) = &call.idempotency_key {
                request = request.header("idempotency-key", k);
            }
            let body = match &call.body {
                Some(b) => {
                    request = request.header(header::CONTENT_TYPE, "application/json");
                    Body::from(b.to_string())
                }
                None => Body::empty(),
            };
            let request = request.body(body).map_err(|e| e.to_string())?;
            let response = self
                .0
                .clone()
                .oneshot(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let bytes = axum::body::to_bytes(response.into_body(), ANSWER_BYTES_MAX)
                .await
                .map_err(|e| e.to_string())?;
            Ok((
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            ))
        })
    }
}

/// A running gateway, over HTTP (the stdio server's way in).
pub struct OverHttp {
    pub base_url: String,
    pub client: reqwest::Client,
}

impl Backend for OverHttp {
    fn send(&self, call: ApiCall, key: String) -> BoxFuture<'_, Result<(u16, Value), String>> {
        Box::pin(async move {
            let url = format!("{}{}", self.base_url.trim_end_matches('/'), call.path);
            let method = reqwest::Method::from_bytes(call.method.as_bytes()).expect("GET or POST");
            let mut request = self.client.request(method, url).header("x-api-key", key);
            if let Some(k) = &call.idempotency_key {
                request = request.header("idempotency-key", k);
            }
            if let Some(b) = &call.body {
                request = request.json(b);
            }
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response.json().await.unwrap_or(Value::Null);
            Ok((status, body))
        })
    }
}

/// The MCP server: the tool catalog over a [`Backend`]. Over HTTP the key
/// is each request's `x-api-key`; over stdio it is fixed at start.
#[derive(Clone)]
pub struct BankTools {
    backend: Arc<dyn Backend>,
    fixed_key: Option<String>,
}

impl BankTools {
    pub fn new(backend: Arc<dyn Backend>, fixed_key: Option<String>) -> Self {
        BankTools { backend, fixed_key }
    }

    fn key(&self, context: &RequestContext<RoleServer>) -> Option<String> {
        if let Some(k) = &self.fixed_key {
            return Some(k.clone());
        }
        let parts = context.extensions.get::<axum::http::request::Parts>()?;
        parts
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    }

    /// Runs a tool: its request(s), the API's answer as the result, a
    /// refusal as a tool error with the API's message.
    async fn run(
        &self,
        name: &str,
        args: &serde_json::Map<String, Value>,
        key: String,
    ) -> CallToolResult {
        let fail = |message: String| CallToolResult::error(vec![ContentBlock::text(message)]);
        let plan = match tools::plan(name, args) {
            Ok(p) => p,
            Err(message) => return fail(message),
        };
        let call = match plan {
            Plan::Call(call) => call,
            Plan::WithUser(then) => {
                let me = ApiCall::get("/v1/auth/me".into());
                match self.backend.send(me, key.clone()).await {
                    Ok((200, who)) => match who["tenant_id"].as_str() {
                        Some(user) => then(user),
                        None => return fail("could not tell whose key this is".into()),
                    },
                    Ok((status, body)) => return fail(tools::error_message(status, &body)),
                    Err(e) => return fail(format!("the bank did not answer: {e}")),
                }
            }
        };
        metrics::counter!("agentbank_mcp_tool_calls_total", "tool" => name.to_string())
            .increment(1);
        match self.backend.send(call, key).await {
            Ok((status, body)) if (200..300).contains(&status) => {
                CallToolResult::success(vec![ContentBlock::text(body.to_string())])
            }
            Ok((status, body)) => fail(tools::error_message(status, &body)),
            Err(e) => fail(format!("the bank did not answer: {e}")),
        }
    }
}

impl ServerHandler for BankTools {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions(
                "agentbank: agents' balances, payments (with the user's spending rules and approvals), \
                 deposits and withdrawals from the user's wallet, the savings vault. Amounts are USDC, \
                 exact decimals. Authenticate with an agent's or the user's API key (x-api-key).",
            );
        info.server_info = Implementation::new("agentbank", env!("CARGO_PKG_VERSION"));
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = tools::catalog()
            .into_iter()
            .map(|t| {
                let schema = match t.schema {
                    Value::Object(o) => o,
                    _ => Default::default(),
                };
                Tool::new(t.name, t.description, Arc::new(schema))
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(key) = self.key(&context) else {
            return Ok(CallToolResult::error(vec![ContentBlock::text(
                "Invalid or missing API key",
            )])
            .into());
        };
        let args = request.arguments.unwrap_or_default();
        Ok(self.run(&request.name, &args, key).await.into())
    }
}

/// The Streamable HTTP service for `/mcp`, over the gateway's `router`.
pub fn http_service(
    router: axum::Router,
) -> rmcp::transport::streamable_http_server::StreamableHttpService<
    BankTools,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
> {
    use rmcp::transport::streamable_http_server::{
        session::local::LocalSessionManager, StreamableHttpServerConfig,
    };
    let backend: Arc<dyn Backend> = Arc::new(InProcess(router));
    let config = StreamableHttpServerConfig::default()
        // The gateway decides who may call (the key); hosts are the deployment's.
        .disable_allowed_hosts()
        .with_json_response(true);
    rmcp::transport::streamable_http_server::StreamableHttpService::new(
        move || Ok(BankTools::new(backend.clone(), None)),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// Serves MCP on stdin/stdout against the gateway at `base_url`, as the
/// holder of `key`, until the client closes the stream.
pub async fn serve_stdio(base_url: String, key: String) -> Result<(), String> {
    use rmcp::ServiceExt as _;
    let backend: Arc<dyn Backend> = Arc::new(OverHttp {
        base_url,
        client: reqwest::Client::new(),
    });
    let service = BankTools::new(backend, Some(key))
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| e.to_string())?;
    service.waiting().await.map_err(|e| e.to_string())?;
    Ok(())
}
