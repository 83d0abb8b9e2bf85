//! The agent bank's MCP tools: for each, the JSON schema and description an
//! LLM acts on, and the REST request(s) it becomes. Pure: arguments in,
//! [`ApiCall`]s out; the server ([`super`]) sends them.

use serde_json::{json, Map, Value};

/// One REST request a tool makes.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiCall {
    pub method: &'static str,
    pub path: String,
    pub body: Option<Value>,
    pub idempotency_key: Option<String>,
}

impl ApiCall {
    pub fn get(path: String) -> Self {
        ApiCall {
            method: "GET",
            path,
            body: None,
            idempotency_key: None,
        }
    }

    pub fn post(path: &str, body: Value, idempotency_key: Option<String>) -> Self {
        ApiCall {
            method: "POST",
            path: path.into(),
            body: Some(body),
            idempotency_key,
        }
    }
}

/// What a tool needs before its request: nothing, or the caller's user id
/// (from `GET /v1/auth/me`), which some routes name in their body or path.
pub enum Plan {
    Call(ApiCall),
    WithUser(Box<dyn FnOnce(&str) -> ApiCall + Send>),
}

/// A tool: name, description, input schema.
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub schema: Value,
}

/// Longest string argument accepted (ids, names, keys).
const TEXT_MAX: usize = 200;

fn id_prop(what: &str) -> Value {
    json!({"type": "string", "maxLength": 64, "description": what})
}

fn amount_prop(what: &str) -> Value {
    json!({"type": ["number", "string"], "description": format!("{what}: a positive amount, at most 6 decimal places (USDC)")})
}

fn idempotency_prop() -> Value {
    json!({"type": "string", "maxLength": 255, "description": "Optional. Repeat a call with the same key and it applies once (safe retries)."})
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// Every tool the server offers.
pub fn catalog() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "get_agent",
            description: "An agent's balance (available), reserved and pending amounts, payment rules (daily and per-transaction limits, approval thresholds), spending policies, status and wallet address.",
            schema: object(json!({"agent_id": id_prop("The agent (agent_… or its UUID)")}), &["agent_id"]),
        },
        ToolSpec {
            name: "list_agents",
            description: "The user's agents with their balances and rules, oldest first. Needs the user's API key (an agent's key sees only itself: use get_agent).",
            schema: object(json!({
                "page": {"type": "integer", "minimum": 1},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                "tag": {"type": "string", "maxLength": 50}
            }), &[]),
        },
        ToolSpec {
            name: "create_payment",
            description: "Pays another agent. The sender's rules apply: over the transaction limit it is refused; over the approval threshold (or past the daily limit, or with approval for all) it waits for the user's approval — the answer then has status New and approvalstatus 'Waiting for Sender Approval'. INTERNAL: between the user's own agents; EXTERNAL: to another user's agent or a 0x address. Use idempotency_key to retry safely.",
            schema: object(json!({
                "sender_agent_id": id_prop("The paying agent"),
                "receiver_agent_id": id_prop("The receiving agent (agent_…), or a 0x address for an EXTERNAL payment"),
                "amount": amount_prop("How much"),
                "name": {"type": "string", "maxLength": 100, "description": "What the payment is for"},
                "type": {"type": "string", "enum": ["INTERNAL", "EXTERNAL"], "description": "Default INTERNAL"},
                "idempotency_key": idempotency_prop()
            }), &["sender_agent_id", "receiver_agent_id", "amount", "name"]),
        },
        ToolSpec {
            name: "approve_payment",
            description: "Approves a payment waiting for the user's approval; the money moves. User key only.",
            schema: object(json!({"payment_id": id_prop("The payment (payee_… or its UUID)")}), &["payment_id"]),
        },
        ToolSpec {
            name: "decline_payment",
            description: "Declines a payment waiting for the user's approval; the held amount returns to the sender. User key only.",
            schema: object(json!({"payment_id": id_prop("The payment (payee_… or its UUID)")}), &["payment_id"]),
        },
        ToolSpec {
            name: "get_payment",
            description: "One payment: amount, sender, receiver, status (New, Confirmed, Failed) and approval status.",
            schema: object(json!({"payment_id": id_prop("The payment (payee_… or its UUID)")}), &["payment_id"]),
        },
        ToolSpec {
            name: "list_payments",
            description: "The user's payments, newest first.",
            schema: object(json!({
                "approval_status": {"type": "string", "maxLength": 50, "description": "e.g. 'Waiting for Sender Approval', 'Approved', 'Decline'"},
                "page": {"type": "integer", "minimum": 1},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100}
            }), &[]),
        },
        ToolSpec {
            name: "wallet_balance",
            description: "The user's wallet: the money agents are funded from.",
            schema: object(json!({}), &[]),
        },
        ToolSpec {
            name: "deposit",
            description: "Moves money from the user's wallet to an agent. Refused when the wallet holds less. User key only.",
            schema: object(json!({
                "agent_id": id_prop("The agent to fund"),
                "amount": amount_prop("How much"),
                "idempotency_key": idempotency_prop()
            }), &["agent_id", "amount"]),
        },
        ToolSpec {
            name: "withdraw",
            description: "Moves money from an agent back to the user's wallet (or, with on-chain settlement, to wallet_address). Never below zero. User key only.",
            schema: object(json!({
                "agent_id": id_prop("The agent"),
                "amount": amount_prop("How much"),
                "wallet_address": {"type": "string", "maxLength": 100, "description": "Optional 0x address (on-chain settlement only)"},
                "idempotency_key": idempotency_prop()
            }), &["agent_id", "amount"]),
        },
        ToolSpec {
            name: "savings_deposit",
            description: "Puts part of an agent's balance in the savings vault, earning interest at the current rate (kept for the position's life).",
            schema: object(json!({"agent_id": id_prop("The agent"), "amount": amount_prop("How much")}), &["agent_id", "amount"]),
        },
        ToolSpec {
            name: "savings_withdraw",
            description: "Closes a savings position: principal and interest back to the agent's balance.",
            schema: object(json!({"investment_id": id_prop("The position (inv_… or its UUID)")}), &["investment_id"]),
        },
        ToolSpec {
            name: "savings_positions",
            description: "An agent's savings positions with their rate, current value and interest earned.",
            schema: object(json!({"agent_id": id_prop("The agent")}), &["agent_id"]),
        },
        ToolSpec {
            name: "interest_calculator",
            description: "What an amount earns in the savings vault over some days, at the current or a given annual rate (%).",
            schema: object(json!({
                "amount": amount_prop("The principal"),
                "days": {"type": "integer", "minimum": 1, "maximum": 3650},
                "custom_rate": {"type": "number", "minimum": 0, "maximum": 100}
            }), &["amount", "days"]),
        },
        ToolSpec {
            name: "pricing_quote",
            description: "A price quote for one of the tenant's products from the revenue platform's pricing engine (contextual Thompson sampling).",
            schema: object(json!({
                "product_id": {"type": "string", "maxLength": 100},
                "customer_segment": {"type": "string", "maxLength": 100},
                "context": {"type": "object", "description": "Optional pricing context (see the revenue API)"}
            }), &["product_id"]),
        },
    ]
}

/// A string argument, bounded; `None` when absent.
fn text(args: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= TEXT_MAX => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(format!("{name} is longer than {TEXT_MAX} characters")),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

fn required(args: &Map<String, Value>, name: &str) -> Result<String, String> {
    text(args, name)?.ok_or_else(|| format!("{name} is required"))
}

/// An id as a URL path segment: ids are base58 or UUIDs, anything else
/// cannot name a resource (and must not add path segments).
fn segment(args: &Map<String, Value>, name: &str) -> Result<String, String> {
    let id = required(args, name)?;
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!("{name} is not an id"));
    }
    Ok(id)
}

/// The arguments passed through unchanged (amounts stay exact: strings or
/// JSON numbers with their text).
fn pass(args: &Map<String, Value>, name: &str) -> Value {
    args.get(name).cloned().unwrap_or(Value::Null)
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Percent-encodes a query value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn number_text(args: &Map<String, Value>, name: &str) -> Option<String> {
    match args.get(name) {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// `GET /payments/{id}`, for an id that can only name a payment.
pub fn get_payment(id: &str) -> Result<ApiCall, String> {
    let id = segment(
        &Map::from_iter([("payment_id".into(), json!(id))]),
        "payment_id",
    )?;
    Ok(ApiCall::get(format!("/payments/{id}")))
}

/// The request(s) tool `name` makes with `args`; a message for bad input.
pub fn plan(name: &str, args: &Map<String, Value>) -> Result<Plan, String> {
    let key = text(args, "idempotency_key")?;
    Ok(match name {
        "get_agent" => Plan::Call(ApiCall::get(format!(
            "/agentsWith/{}",
            segment(args, "agent_id")?
        ))),
        "list_agents" => {
            let q = query(&[
                ("page", number_text(args, "page")),
                ("limit", number_text(args, "limit")),
                ("tag", text(args, "tag")?),
            ]);
            Plan::WithUser(Box::new(move |user| {
                ApiCall::get(format!("/agents/{user}{q}"))
            }))
        }
        "create_payment" => Plan::Call(ApiCall::post(
            "/payments/register",
            json!({
                "senderagentid": required(args, "sender_agent_id")?,
                "receiveragentid": required(args, "receiver_agent_id")?,
                "name": required(args, "name")?,
                "type": text(args, "type")?.unwrap_or_else(|| "INTERNAL".into()),
                "paymentdetails": {"amount": pass(args, "amount"), "currency": "USDC", "method": "CRYPTO_ADDRESS"},
            }),
            key,
        )),
        "approve_payment" | "decline_payment" => {
            let route = if name == "approve_payment" {
                "/payments/setApprove"
            } else {
                "/payments/setDecline"
            };
            Plan::Call(ApiCall::post(
                route,
                json!({"paymentId": required(args, "payment_id")?}),
                key,
            ))
        }
        "get_payment" => Plan::Call(get_payment(&required(args, "payment_id")?)?),
        "list_payments" => Plan::Call(ApiCall::get(format!(
            "/user/payments{}",
            query(&[
                ("approvalStatus", text(args, "approval_status")?),
                ("page", number_text(args, "page")),
                ("limit", number_text(args, "limit")),
            ])
        ))),
        "wallet_balance" => Plan::Call(ApiCall::get("/user/wallet-balance".into())),
        "deposit" | "withdraw" => {
            let route = if name == "deposit" {
                "/agents/deposit"
            } else {
                "/agents/withdraw"
            };
            let agent = required(args, "agent_id")?;
            let amount = pass(args, "amount");
            let address = text(args, "wallet_address")?;
            Plan::WithUser(Box::new(move |user| {
                let mut body = json!({"userid": user, "agentid": agent, "amount": amount});
                if let Some(a) = address {
                    body["walletaddress"] = json!(a);
                }
                ApiCall::post(route, body, key)
            }))
        }
        "savings_deposit" => Plan::Call(ApiCall::post(
            "/savings/deposit",
            json!({"agentId": required(args, "agent_id")?, "amount": pass(args, "amount")}),
            key,
        )),
        "savings_withdraw" => Plan::Call(ApiCall::post(
            "/savings/withdraw",
            json!({"investmentId": required(args, "investment_id")?}),
            key,
        )),
        "savings_positions" => Plan::Call(ApiCall::get(format!(
            "/savings/{}",
            segment(args, "agent_id")?
        ))),
        "interest_calculator" => {
            let mut body = json!({"amount": pass(args, "amount"), "days": pass(args, "days")});
            if let Some(rate) = args.get("custom_rate").filter(|r| !r.is_null()) {
                body["customRate"] = rate.clone();
            }
            Plan::Call(ApiCall::post("/investment/calculator", body, None))
        }
        "pricing_quote" => {
            let mut body = json!({"product_id": required(args, "product_id")?});
            if let Some(s) = text(args, "customer_segment")? {
                body["customer_segment"] = json!(s);
            }
            if let Some(c) = args.get("context").filter(|c| c.is_object()) {
                body["context"] = c.clone();
            }
            Plan::Call(ApiCall::post("/v1/monetizer/quote", body, key))
        }
        other => return Err(format!("unknown tool '{other}'")),
    })
}

/// The message of an API error answer, in either of the API's formats.
pub fn error_message(status: u16, body: &Value) -> String {
    let message = match &body["error"] {
        Value::String(s) => Some(s.clone()),
        Value::Object(e) => e.get("message").and_then(Value::as_str).map(String::from),
        _ => None,
    };
    message.unwrap_or_else(|| format!("the API answered {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn every_tool_in_the_catalog_plans_and_has_an_object_schema() {
        for tool in catalog() {
            assert_eq!(tool.schema["type"], "object", "{}", tool.name);
            let required = tool.schema["required"].as_array().unwrap();
            let mut given = Map::new();
            for r in required {
                given.insert(r.as_str().unwrap().into(), json!("x1"));
            }
            assert!(plan(tool.name, &given).is_ok(), "{}", tool.name);
        }
        assert!(plan("steal_money", &Map::new()).is_err());
    }

    #[test]
    fn ids_cannot_add_path_segments_and_amounts_stay_exact() {
        let bad = plan("get_agent", &args(json!({"agent_id": "../users"})));
        assert!(bad.is_err());
        let Ok(Plan::Call(call)) = plan(
            "create_payment",
            &args(
                json!({"sender_agent_id": "a", "receiver_agent_id": "b", "amount": "0.000001", "name": "n", "idempotency_key": "k"}),
            ),
        ) else {
            panic!("a call")
        };
        assert_eq!(call.body.unwrap()["paymentdetails"]["amount"], "0.000001");
        assert_eq!(call.idempotency_key.as_deref(), Some("k"));
        let Ok(Plan::Call(call)) = plan(
            "list_payments",
            &args(json!({"approval_status": "Waiting for Sender Approval"})),
        ) else {
            panic!("a call")
        };
        assert_eq!(
            call.path,
            "/user/payments?approvalStatus=Waiting%20for%20Sender%20Approval"
        );
    }

    #[test]
    fn error_messages_come_from_either_format() {
        assert_eq!(
            error_message(404, &json!({"error": "Agent not found"})),
            "Agent not found"
        );
        assert_eq!(
            error_message(
                400,
                &json!({"error": {"code": "VALIDATION_ERROR", "message": "bad"}})
            ),
            "bad"
        );
        assert_eq!(error_message(502, &Value::Null), "the API answered 502");
    }
}
