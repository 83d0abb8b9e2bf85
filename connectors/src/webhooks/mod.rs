//! Webhooks: what an event looks like to a receiver, how it is signed, and
//! the dispatcher that delivers queued deliveries with retries.
//!
//! - Envelope `{id, type, created, data}`; types like `payment.settled`.
//! - Signatures: `X-MegaAgent-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
//!   "{t}:{payload}">` keyed by the secret's text, exactly as the revenue
//!   seed's verifier computes it; and the Standard Webhooks headers
//!   (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC
//!   of "{id}.{t}.{payload}">` keyed by the base64-decoded `whsec_` secret).
//! - Intake: the Postgres sink queues deliveries for matching endpoints in
//!   the read model's transaction (exactly once). The dispatcher here claims
//!   the oldest pending delivery of each endpoint (per-endpoint order), posts
//!   it with a timeout, and on failure schedules the next attempt by
//!   [`DEFAULT_SCHEDULE`] with ±10% jitter; past the schedule the delivery is
//!   dead (and produced to the dead-letter topic), and an endpoint with
//!   [`DISABLE_AFTER_DEAD`] dead deliveries in a row is disabled. Each
//!   endpoint has at most one request in flight, so a slow or hanging
//!   receiver holds up only itself.

mod dispatcher;

pub use dispatcher::{run, DispatcherConfig};

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use schemas::ids::{self, Kind};
use schemas::{Event, EventPayload};

/// Waits before each attempt after the first fails: immediately, 5 s, 5 min,
/// 30 min, 2 h, 5 h, 10 h, 10 h — eight attempts over about 28 hours.
pub const DEFAULT_SCHEDULE: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// Dead deliveries in a row after which an endpoint is disabled.
pub const DISABLE_AFTER_DEAD: i32 = 5;

/// Every event type a webhook can subscribe to (`*` subscribes to all).
pub const EVENT_TYPES: [&str; 31] = [
    "agent.created",
    "deposit.completed",
    "withdrawal.completed",
    "payment.created",
    "payment.approved",
    "payment.declined",
    "payment.settled",
    "payment.failed",
    "payment.received",
    "bonus.granted",
    "wallet.changed",
    "savings.deposited",
    "savings.interest_accrued",
    "savings.withdrawn",
    "transfer.settled",
    "opportunity.created",
    "opportunity.activated",
    "opportunity.executed",
    "quote.issued",
    "quote.executed",
    "quote.expired",
    "system.alert",
    "revenue.received",
    "revenue.milestone",
    "revenue.target_set",
    "position.opened",
    "portfolio.rebalanced",
    "agent.updated",
    "agent.paused",
    "agent.resumed",
    "agent.deactivated",
];

/// The webhook type of an event.
pub fn event_type(p: &EventPayload) -> &'static str {
    match p {
        EventPayload::AgentCreated(_) => "agent.created",
        EventPayload::FundsDeposited(_) => "deposit.completed",
        EventPayload::FundsWithdrawn(_) => "withdrawal.completed",
        EventPayload::PaymentRegistered(_) => "payment.created",
        EventPayload::PaymentApproved(_) => "payment.approved",
        EventPayload::PaymentDeclined(_) => "payment.declined",
        EventPayload::PaymentConfirmed(_) => "payment.settled",
        EventPayload::PaymentFailed(_) => "payment.failed",
        EventPayload::PaymentReceived(_) => "payment.received",
        EventPayload::SignupBonusGranted(_) => "bonus.granted",
        EventPayload::WalletChanged(_) => "wallet.changed",
        EventPayload::SavingsDeposited(_) => "savings.deposited",
        EventPayload::InterestAccrued(_) => "savings.interest_accrued",
        EventPayload::SavingsWithdrawn(_) => "savings.withdrawn",
        EventPayload::TransferSettled(_) => "transfer.settled",
        EventPayload::OpportunityCreated(_) => "opportunity.created",
        EventPayload::OpportunityActivated(_) => "opportunity.activated",
        EventPayload::OpportunityExecuted(_) => "opportunity.executed",
        EventPayload::QuoteIssued(_) => "quote.issued",
        EventPayload::QuoteExecuted(_) => "quote.executed",
        EventPayload::QuoteExpired(_) => "quote.expired",
        EventPayload::SystemAlert(_) => "system.alert",
        EventPayload::RevenueRecorded(_) => "revenue.received",
        EventPayload::RevenueMilestone(_) => "revenue.milestone",
        EventPayload::RevenueTargetSet(_) => "revenue.target_set",
        EventPayload::PositionOpened(_) => "position.opened",
        EventPayload::PortfolioRebalanced(_) => "portfolio.rebalanced",
        EventPayload::AgentUpdated(u) => {
            use schemas::command::{agent_field, agent_status};
            let status_change = u.changes.iter().find(|c| c.field == agent_field::STATUS);
            match status_change.and_then(|c| c.to.as_deref()) {
                Some(agent_status::PAUSED) => "agent.paused",
                Some(agent_status::ACTIVE) => "agent.resumed",
                Some(agent_status::DEACTIVATED) => "agent.deactivated",
                _ => "agent.updated",
            }
        }
    }
}

/// What a receiver gets: `{id, type, created, data}`; `data` is the event's
/// payload (without its journal entry) with the agent's and user's ids, or
/// for the revenue platform's events the seed's shapes.
pub fn envelope(e: &Event) -> Value {
    let created = chrono::DateTime::from_timestamp_millis(e.timestamp_ms).unwrap_or_default();
    let wrap = |data: Value| {
        json!({
            "id": ids::short(Kind::Event, e.id),
            "type": event_type(&e.payload),
            "created": created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": data,
        })
    };
    match &e.payload {
        EventPayload::OpportunityCreated(c) | EventPayload::OpportunityActivated(c) => {
            return wrap(json!(c.opportunity.view()))
        }
        EventPayload::OpportunityExecuted(c) => return wrap(json!(c.opportunity.execution_view())),
        EventPayload::QuoteIssued(c)
        | EventPayload::QuoteExecuted(c)
        | EventPayload::QuoteExpired(c) => return wrap(json!(c.quote.view())),
        EventPayload::SystemAlert(a) => return wrap(a.view()),
        EventPayload::RevenueRecorded(r) => return wrap(json!(r.entry.transaction_view())),
        EventPayload::RevenueMilestone(m) => return wrap(m.view()),
        EventPayload::PositionOpened(p) => return wrap(p.position.view()),
        EventPayload::PortfolioRebalanced(r) => return wrap(r.view()),
        // On the user's key: the agent on the other side, if any, by its id.
        EventPayload::WalletChanged(w) => {
            return wrap(json!({
                "amount": w.amount.to_string(),
                "currency": w.currency,
                "balance_after": w.balance_after.to_string(),
                "memo": w.memo,
                "agent_id": w.agent.as_deref()
                    .and_then(|a| uuid::Uuid::parse_str(a).ok())
                    .map(|a| ids::short(Kind::Agent, a)),
                "user_id": ids::short(Kind::User, e.user_id),
            }))
        }
        EventPayload::RevenueTargetSet(t) => {
            return wrap(json!({
                "currency": t.currency,
                "monthly_target": schemas::money::json_number(t.monthly_target),
            }))
        }
        _ => {}
    }
    let mut data = match &e.payload {
        EventPayload::AgentCreated(p) => json!(p),
        EventPayload::AgentUpdated(p) => json!(p),
        EventPayload::FundsDeposited(p) | EventPayload::FundsWithdrawn(p) => json!(p),
        EventPayload::SignupBonusGranted(p) => json!(p),
        EventPayload::SavingsDeposited(c)
        | EventPayload::InterestAccrued(c)
        | EventPayload::SavingsWithdrawn(c) => json!(c),
        EventPayload::TransferSettled(t) => json!(t),
        other => json!(other.payment()),
    };
    if let Some(d) = data.as_object_mut() {
        d.remove("journal");
        d.insert(
            "agent_id".into(),
            json!(ids::short(Kind::Agent, e.agent_id)),
        );
        d.insert("user_id".into(), json!(ids::short(Kind::User, e.user_id)));
    }
    wrap(data)
}

fn hmac_sha256(key: &[u8], message: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The Standard Webhooks key of a `whsec_<base64>` secret (padding
/// optional, as the reference libraries accept it); `None` for a secret
/// without the prefix, which signs with its own bytes (give a Standard
/// Webhooks library those bytes).
pub fn standard_key(secret: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(secret.strip_prefix("whsec_")?).ok()
}

/// The signature headers of one attempt of delivery `msg_id` at unix time `t`.
pub fn signature_headers(
    secret: &str,
    msg_id: &str,
    t: i64,
    body: &str,
) -> [(&'static str, String); 4] {
    let megaagent = hex::encode(hmac_sha256(secret.as_bytes(), &format!("{t}:{body}")));
    let key = standard_key(secret).unwrap_or_else(|| secret.as_bytes().to_vec());
    let standard = base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(&key, &format!("{msg_id}.{t}.{body}")));
    [
        ("X-MegaAgent-Signature", format!("t={t},v1={megaagent}")),
        ("webhook-id", msg_id.to_string()),
        ("webhook-timestamp", t.to_string()),
        ("webhook-signature", format!("v1,{standard}")),
    ]
}

/// Refuses URLs that are not http(s) or that resolve to loopback, private,
/// link-local or unspecified addresses (SSRF), unless `allow_private`.
pub async fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| format!("'{url}' is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("url must be http or https".into());
    }
    let host = parsed.host_str().ok_or("url has no host")?.to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    if allow_private {
        return Ok(());
    }
    let addrs = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|_| format!("cannot resolve {host}"))?;
    for a in addrs {
        let ip = a.ip();
        let private = match ip {
            std::net::IpAddr::V4(v4) => {
                v4.is_loopback()
                    || v4.is_private()
                    || v4.is_link_local()
                    || v4.is_unspecified()
                    || v4.is_broadcast()
                    || v4.octets()[0] == 100 && (v4.octets()[1] & 0xC0) == 64
            }
            std::net::IpAddr::V6(v6) => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || (v6.segments()[0] & 0xfe00) == 0xfc00
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
                    || v6
                        .to_ipv4_mapped()
                        .is_some_and(|v4| v4.is_loopback() || v4.is_private())
            }
        };
        if private {
            return Err(format!(
                "{host} resolves to a private or loopback address ({ip})"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revenue_events_carry_their_own_data() {
        use schemas::revenue::pricing::SystemAlert;
        let e = Event {
            id: uuid::Uuid::new_v4(),
            agent_id: uuid::Uuid::new_v4(),
            user_id: uuid::Uuid::new_v4(),
            command_id: uuid::Uuid::new_v4(),
            correlation_id: None,
            timestamp_ms: 0,
            agent_version: 1,
            payload: EventPayload::SystemAlert(SystemAlert {
                severity: "warning".into(),
                component: "monetizer".into(),
                message: "High pricing variance detected".into(),
                product_id: Some("prod_1".into()),
                variance: Some(0.35),
            }),
        };
        let v = envelope(&e);
        assert_eq!(v["type"], "system.alert");
        assert_eq!(v["data"]["details"]["variance"], 0.35);
        assert!(
            v["data"].get("agent_id").is_none(),
            "no bank fields on revenue events"
        );
        // Every type listed for subscription is one an event can have.
        assert!(EVENT_TYPES.contains(&event_type(&e.payload)));
    }

    #[test]
    fn signatures_match_the_documented_schemes() {
        // The seed's verifier: HMAC-SHA256(secret, "{t}:{payload}") in hex.
        let h = signature_headers("whsec_dGVzdA==", "msg_1", 1_700_000_000, "{\"a\":1}");
        let expected = hex::encode(hmac_sha256(b"whsec_dGVzdA==", "1700000000:{\"a\":1}"));
        assert_eq!(h[0].1, format!("t=1700000000,v1={expected}"));
        // Standard Webhooks: key = base64-decoded secret ("test").
        let std_sig = base64::engine::general_purpose::STANDARD
            .encode(hmac_sha256(b"test", "msg_1.1700000000.{\"a\":1}"));
        assert_eq!(h[3].1, format!("v1,{std_sig}"));
    }

    #[tokio::test]
    async fn private_and_odd_urls_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/x",
            "http://10.0.0.1/",
            "http://[::1]/",
            "ftp://example.com/",
            "nope",
        ] {
            assert!(check_url(url, false).await.is_err(), "{url}");
        }
        assert!(check_url("http://127.0.0.1:9/x", true).await.is_ok());
        assert!(check_url("http://93.184.216.34/hook", false).await.is_ok());
    }
}
