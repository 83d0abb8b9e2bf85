//! A2A (Agent-to-Agent protocol 1.0, as the Python `a2a-sdk` 1.x speaks it):
//! the Agent Card at `/.well-known/agent-card.json` and the JSON-RPC binding
//! at `/a2a`. A payment request is a task whose id is the payment's: its
//! state is read from the payment every time (`SUBMITTED`/`WORKING` never
//! linger — the bank answers at once), `INPUT_REQUIRED` while it waits for
//! the user's approval, `COMPLETED` once credited, `FAILED` with the reason
//! when refused, `CANCELED` when declined. No task store: the payment is the
//! task. `SendStreamingMessage` and `SubscribeToTask` stream the task, then
//! its status updates, over SSE until it ends (or for at most
//! [`SUBSCRIPTION_MAX`]). Each method is the bank's own REST route, called in process with
//! the caller's key, so rules, approvals and scoping are the REST API's.
//!
//! Models are typed serde structs of the spec's JSON (protobuf JSON names:
//! lowerCamelCase fields, `TASK_STATE_*` enums); no maintained Rust crate
//! speaks A2A 1.0 yet.

use std::convert::Infallible;
use std::sync::Arc;

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::mcp::tools::ApiCall;
use crate::mcp::Backend;

/// How often a subscription reads its payment.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Longest a subscription stays open (a payment may wait days for approval).
pub const SUBSCRIPTION_MAX: Duration = Duration::from_secs(600);

/// The JSON-RPC error codes of the A2A spec used here.
mod code {
    pub const PARSE_OR_INVALID: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const TASK_NOT_FOUND: i64 = -32001;
    pub const TASK_NOT_CANCELABLE: i64 = -32002;
}

/// The Agent Card, for this gateway as `scheme://host` reaches it.
pub fn card(scheme: &str, host: &str) -> Value {
    json!({
        "name": "agentbank",
        "description": "A bank for autonomous agents: pay other agents within the spending rules the user set. A payment needing the user's approval waits as input-required and completes when the user approves it.",
        "version": env!("CARGO_PKG_VERSION"),
        "supportedInterfaces": [{
            "url": format!("{scheme}://{host}/a2a"),
            "protocolBinding": "JSONRPC",
            "protocolVersion": "1.0"
        }],
        "capabilities": {"streaming": true, "pushNotifications": false},
        "securitySchemes": {
            "apiKey": {"apiKeySecurityScheme": {"location": "header", "name": "x-api-key",
                "description": "An agent's or the user's agentbank API key"}}
        },
        "securityRequirements": [{"schemes": {"apiKey": {"list": []}}}],
        "defaultInputModes": ["application/json"],
        "defaultOutputModes": ["application/json", "text/plain"],
        "skills": [{
            "id": "pay",
            "name": "Pay an agent",
            "description": "Send a message with a data part {sender_agent_id, receiver_agent_id, amount, name, type?} (type INTERNAL between the user's own agents, EXTERNAL otherwise). The task completes when the receiver is credited, waits as input-required for the user's approval, or fails with the bank's reason.",
            "tags": ["payments", "usdc"],
            "examples": ["{\"sender_agent_id\": \"agent_…\", \"receiver_agent_id\": \"agent_…\", \"amount\": \"2.50\", \"name\": \"API credits\"}"],
            "inputModes": ["application/json"],
            "outputModes": ["application/json"]
        }]
    })
}

/// `GET /.well-known/agent-card.json` (public). The interface's URL is
/// where the client reached the card: its `Host`, and `https` behind a
/// proxy that says so (`X-Forwarded-Proto`).
pub async fn agent_card(headers: HeaderMap) -> Json<Value> {
    let header = |name: &str| headers.get(name).and_then(|h| h.to_str().ok());
    let host = header("x-forwarded-host")
        .or(header("host"))
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    let scheme = match header("x-forwarded-proto") {
        Some("https") => "https",
        _ => "http",
    };
    Json(card(scheme, host))
}

#[derive(Deserialize)]
struct RpcRequest {
    #[serde(default)]
    id: Value,
    method: String,
    #[serde(default)]
    params: Value,
}

/// A message's part (text or data; others ignored).
#[derive(Deserialize)]
struct Part {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    message_id: String,
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
struct SendParams {
    message: Message,
}

#[derive(Deserialize)]
struct TaskParams {
    id: String,
}

/// A task as the spec's JSON shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Task {
    id: String,
    context_id: String,
    status: Value,
    artifacts: Vec<Value>,
}

fn agent_message(id: &str, text: &str) -> Value {
    json!({"messageId": format!("{id}-status"), "role": "ROLE_AGENT", "parts": [{"text": text}]})
}

/// The task a payment (the REST API's JSON) is.
fn task_of(payment: &Value) -> Value {
    let id = payment["id"].as_str().unwrap_or_default().to_string();
    let (state, text) = match (
        payment["status"].as_str().unwrap_or_default(),
        payment["approvalstatus"].as_str().unwrap_or_default(),
    ) {
        (_, "Waiting for Sender Approval") => (
            "TASK_STATE_INPUT_REQUIRED",
            "Waiting for the user's approval",
        ),
        ("Confirmed", "Approved") => ("TASK_STATE_COMPLETED", "Paid"),
        ("Failed", _) => ("TASK_STATE_FAILED", "The receiver could not be credited"),
        (_, "Decline") => ("TASK_STATE_CANCELED", "Declined by the user"),
        (_, "Expired") => ("TASK_STATE_CANCELED", "The approval request expired"),
        _ => ("TASK_STATE_WORKING", "In progress"),
    };
    let task = Task {
        context_id: payment["senderagentid"]
            .as_str()
            .or(payment["sender"].as_str())
            .unwrap_or(&id)
            .to_string(),
        status: json!({"state": state, "message": agent_message(&id, text)}),
        artifacts: vec![
            json!({"artifactId": "payment", "name": "payment", "parts": [{"data": payment}]}),
        ],
        id,
    };
    json!(task)
}

/// A refused request: a failed task with the bank's reason (no payment
/// exists, so its id is the message's).
fn failed_task(message_id: &str, reason: &str) -> Value {
    json!({
        "id": message_id,
        "contextId": message_id,
        "status": {"state": "TASK_STATE_FAILED", "message": agent_message(message_id, reason)},
        "artifacts": [],
    })
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Json<Value> {
    Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}))
}

fn rpc_result(id: &Value, result: Value) -> Json<Value> {
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// `POST /a2a`: `SendMessage`, `GetTask`, `CancelTask`, and the streaming
/// `SendStreamingMessage`, `SubscribeToTask`.
pub async fn rpc(
    State(backend): State<Arc<dyn Backend>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Ok(request) = serde_json::from_slice::<RpcRequest>(&body) else {
        return rpc_error(
            &Value::Null,
            code::PARSE_OR_INVALID,
            "Invalid JSON-RPC request",
        )
        .into_response();
    };
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    match request.method.as_str() {
        "SendStreamingMessage" => {
            let id = request.id.clone();
            let send = RpcRequest {
                method: "SendMessage".into(),
                ..request
            };
            let first = unary(backend.clone(), key.clone(), send).await.0;
            let task = &first["result"]["task"];
            let payment = task["artifacts"].as_array().is_some_and(|a| !a.is_empty());
            match task["id"].as_str() {
                // A payment: its task, then its updates while it runs.
                Some(task_id) if payment => {
                    stream(backend, key, id, task_id.to_string(), true).into_response()
                }
                // A refusal: the failed task (or the error) alone.
                _ => Sse::new(futures::stream::iter([Ok::<_, Infallible>(
                    Event::default().data(first.to_string()),
                )]))
                .into_response(),
            }
        }
        "SubscribeToTask" => {
            let Ok(params) = serde_json::from_value::<TaskParams>(request.params.clone()) else {
                return rpc_error(&request.id, code::INVALID_PARAMS, "params.id is required")
                    .into_response();
            };
            stream(backend, key, request.id, params.id, false).into_response()
        }
        _ => unary(backend, key, request).await.into_response(),
    }
}

fn terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_STATE_COMPLETED"
            | "TASK_STATE_FAILED"
            | "TASK_STATE_CANCELED"
            | "TASK_STATE_REJECTED"
    )
}

/// The task, then a status update each time its state changes, until it
/// ends — or, for a new message's stream, until it is interrupted (waiting
/// for approval: the client subscribes to follow it further).
fn stream(
    backend: Arc<dyn Backend>,
    key: String,
    rpc_id: Value,
    task_id: String,
    stop_when_interrupted: bool,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let started = Instant::now();
    // The unfold's state: the last state sent (None: nothing yet), or None
    // once the stream has ended.
    let events = futures::stream::unfold(Some(None::<String>), move |last| {
        let (backend, key, rpc_id, task_id) = (
            backend.clone(),
            key.clone(),
            rpc_id.clone(),
            task_id.clone(),
        );
        async move {
            let mut last = last?;
            loop {
                let read = match crate::mcp::tools::get_payment(&task_id) {
                    Ok(get) => backend.send(get, key.clone()).await,
                    Err(e) => Err(e),
                };
                let payment = match read {
                    Ok((200, p)) => p,
                    _ => {
                        let e = json!({"jsonrpc": "2.0", "id": rpc_id,
                            "error": {"code": code::TASK_NOT_FOUND, "message": "Task not found"}});
                        return Some((Ok(Event::default().data(e.to_string())), None));
                    }
                };
                let task = task_of(&payment);
                let state = task["status"]["state"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let ends = terminal(&state)
                    || (stop_when_interrupted && state == "TASK_STATE_INPUT_REQUIRED")
                    || started.elapsed() > SUBSCRIPTION_MAX;
                let result = match &last {
                    None => Some(json!({"task": task})),
                    Some(seen) if *seen != state => Some(json!({"statusUpdate": {
                        "taskId": task["id"], "contextId": task["contextId"], "status": task["status"],
                    }})),
                    _ => None,
                };
                if let Some(result) = result {
                    let message = json!({"jsonrpc": "2.0", "id": rpc_id, "result": result});
                    let next = (!ends).then_some(Some(state));
                    return Some((Ok(Event::default().data(message.to_string())), next));
                }
                if ends {
                    return None;
                }
                last = Some(state);
                tokio::time::sleep(POLL_EVERY).await;
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// The methods answered at once.
async fn unary(backend: Arc<dyn Backend>, key: String, request: RpcRequest) -> Json<Value> {
    let id = request.id.clone();
    let call = |call: ApiCall| backend.send(call, key.clone());
    match request.method.as_str() {
        "SendMessage" => {
            let Ok(params) = serde_json::from_value::<SendParams>(request.params) else {
                return rpc_error(&id, code::INVALID_PARAMS, "params.message is required");
            };
            let message = params.message;
            let Some(data) = message.parts.iter().find_map(|p| p.data.clone()) else {
                let said = message
                    .parts
                    .iter()
                    .find_map(|p| p.text.clone())
                    .unwrap_or_default();
                let reason = format!("A payment request is a data part {{sender_agent_id, receiver_agent_id, amount, name}}; got text '{said}'");
                return rpc_result(
                    &id,
                    json!({"task": failed_task(&message.message_id, &reason)}),
                );
            };
            let args = data.as_object().cloned().unwrap_or_default();
            let planned = crate::mcp::tools::plan("create_payment", &args);
            let Ok(crate::mcp::tools::Plan::Call(mut pay)) = planned else {
                let reason = planned.err().unwrap_or_default();
                return rpc_result(
                    &id,
                    json!({"task": failed_task(&message.message_id, &reason)}),
                );
            };
            // The message id makes a resent message the same payment.
            pay.idempotency_key = Some(format!("a2a-{}", message.message_id));
            match call(pay).await {
                Ok((200, payment)) => rpc_result(&id, json!({"task": task_of(&payment)})),
                Ok((status, body)) => {
                    let reason = crate::mcp::tools::error_message(status, &body);
                    rpc_result(
                        &id,
                        json!({"task": failed_task(&message.message_id, &reason)}),
                    )
                }
                Err(e) => rpc_error(&id, -32603, &format!("the bank did not answer: {e}")),
            }
        }
        "GetTask" | "CancelTask" => {
            let Ok(params) = serde_json::from_value::<TaskParams>(request.params) else {
                return rpc_error(&id, code::INVALID_PARAMS, "params.id is required");
            };
            let Ok(get) = crate::mcp::tools::get_payment(&params.id) else {
                return rpc_error(&id, code::TASK_NOT_FOUND, "Task not found");
            };
            let payment = match call(get.clone()).await {
                Ok((200, payment)) => payment,
                Ok(_) => return rpc_error(&id, code::TASK_NOT_FOUND, "Task not found"),
                Err(e) => return rpc_error(&id, -32603, &format!("the bank did not answer: {e}")),
            };
            if request.method == "GetTask" {
                return rpc_result(&id, task_of(&payment));
            }
            // Canceling is declining a payment that waits for approval.
            if payment["approvalstatus"] != "Waiting for Sender Approval" {
                return rpc_error(&id, code::TASK_NOT_CANCELABLE, "Task cannot be canceled");
            }
            let decline = ApiCall::post(
                "/payments/setDecline",
                json!({"paymentId": params.id}),
                None,
            );
            match call(decline).await {
                Ok((200, _)) => {}
                Ok((status, body)) => {
                    return rpc_error(
                        &id,
                        code::TASK_NOT_CANCELABLE,
                        &crate::mcp::tools::error_message(status, &body),
                    )
                }
                Err(e) => return rpc_error(&id, -32603, &format!("the bank did not answer: {e}")),
            }
            // Read again: the task as the decline left it.
            match call(get.clone()).await {
                Ok((200, payment)) => rpc_result(&id, task_of(&payment)),
                _ => rpc_error(&id, code::TASK_NOT_FOUND, "Task not found"),
            }
        }
        other => rpc_error(
            &id,
            code::METHOD_NOT_FOUND,
            &format!("Method not found: {other}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(status: &str, approval: &str) -> Value {
        json!({"id": "payee_1", "senderagentid": "agent_1", "status": status, "approvalstatus": approval})
    }

    #[test]
    fn a_payment_maps_to_its_task_state() {
        let state = |p: Value| task_of(&p)["status"]["state"].as_str().unwrap().to_string();
        assert_eq!(
            state(payment("Confirmed", "Approved")),
            "TASK_STATE_COMPLETED"
        );
        assert_eq!(
            state(payment("New", "Waiting for Sender Approval")),
            "TASK_STATE_INPUT_REQUIRED"
        );
        assert_eq!(state(payment("Failed", "Approved")), "TASK_STATE_FAILED");
        assert_eq!(
            state(payment("Confirmed", "Decline")),
            "TASK_STATE_CANCELED"
        );
        assert_eq!(
            state(payment("Confirmed", "Expired")),
            "TASK_STATE_CANCELED"
        );
        assert_eq!(state(payment("New", "Approved")), "TASK_STATE_WORKING");
        let task = task_of(&payment("Confirmed", "Approved"));
        assert_eq!(
            (task["id"].as_str(), task["contextId"].as_str()),
            (Some("payee_1"), Some("agent_1"))
        );
        assert!(terminal("TASK_STATE_COMPLETED") && !terminal("TASK_STATE_INPUT_REQUIRED"));
    }

    #[test]
    fn the_card_names_the_interface_where_it_was_reached() {
        let c = card("https", "bank.example.com");
        assert_eq!(
            c["supportedInterfaces"][0]["url"],
            "https://bank.example.com/a2a"
        );
        assert_eq!(c["supportedInterfaces"][0]["protocolBinding"], "JSONRPC");
        assert_eq!(c["skills"][0]["id"], "pay");
    }
}
