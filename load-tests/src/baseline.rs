//! The baseline: what a user would otherwise write — a plain Postgres ledger
//! behind the same routes, to compare agentbank against side by side.
//!
//! Same checks and the same rows as agentbank (the gateway's own key
//! verification and user creation, ownership, exact amounts, a balanced
//! journal entry per money movement, payment rows), but each deposit or
//! payment is one SQL transaction that locks the balances it touches with
//! `SELECT … FOR UPDATE`. Honest and reasonably tuned: a connection pool and
//! sqlx's cached prepared statements. Uses agentbank's migrations, in its own
//! database. An agent created with `requireapprovalforall` gets payments that
//! wait (`New / Waiting for Sender Approval`, nothing moved) until
//! `setApprove` moves the money, checking the balance then. Agents are
//! funded from the user's wallet (a row locked per creation or deposit), as
//! in agentbank: the sign-up bonus and `POST /user/wallet/fund` fill it.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use connectors::read_model::identity;
use gateway::auth::{hash_password, mint_key, verify_key};
use gateway::bank::agents::agent_json;
use gateway::body::{JsonObject, NAME_CHARS_MAX};
use gateway::tenant::Mode;
use gateway::ApiError;
use schemas::command::PaymentRules;
use schemas::event::accounts;
use schemas::ids::{self, Kind};
use schemas::money;
use schemas::reply::AgentView;

/// Verified keys, cached as the gateway caches them: the baseline gets the
/// same help, so the comparison measures the ledger, not the key lookup.
static KEYS: std::sync::LazyLock<gateway::cache::KeyCache> =
    std::sync::LazyLock::new(Default::default);

/// The caller's user, verified exactly as the gateway does.
async fn user_of(pool: &PgPool, headers: &HeaderMap) -> Result<Uuid, ApiError> {
    let header = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    Ok(verify_key(pool, &KEYS, header).await?.user_id)
}

async fn sign_up(
    State(pool): State<PgPool>,
    body: JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let missing = "name, email and password are required";
    let name = body.str("name", NAME_CHARS_MAX, missing)?;
    let email = body.str("email", 254, missing)?;
    let password = body.str("password", 128, missing)?;
    let hash = hash_password(password).await?;
    let user = Uuid::new_v4();
    let key = mint_key(user, None, Mode::Live);
    if !identity::insert_user(&pool, user, &name, &email, &hash, &key.row).await? {
        return Err(ApiError::Conflict(
            "A user with this email already exists".into(),
        ));
    }
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO baseline_wallets (user_id, balance) VALUES ($1, $2)")
        .bind(user)
        .bind(money::SIGNUP_BONUS)
        .execute(&mut *tx)
        .await?;
    post_entry(
        &mut tx,
        &format!("{user}:signup-bonus"),
        (
            &accounts::sandbox_bonus("USDC"),
            &accounts::user_wallet(user),
        ),
        money::SIGNUP_BONUS,
        (user, user),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": ids::short(Kind::User, user), "apikey": key.text})),
    ))
}

async fn create_agent(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    let user = user_of(&pool, &headers).await?;
    let name = body.str("name", NAME_CHARS_MAX, "Agent name is required")?;
    let balance = body.opt_amount("balance")?.unwrap_or_default();
    let approval_for_all = body.opt_bool("requireapprovalforall")?.unwrap_or(false);
    let agent = Uuid::new_v4();
    let mut tx = pool.begin().await?;
    if !balance.is_zero() {
        debit_wallet(&mut tx, user, balance).await?;
    }
    sqlx::query(
        "INSERT INTO agents (id, user_id, name, description, currency, require_approval_for_all, tags, status,
            balance, version, created_at, updated_at)
         VALUES ($1, $2, $3, '', 'USDC', $5, '{}', 'active', $4, 1, now(), now())",
    )
    .bind(agent)
    .bind(user)
    .bind(&name)
    .bind(balance)
    .bind(approval_for_all)
    .execute(&mut *tx)
    .await?;
    if !balance.is_zero() {
        // The initial balance is a journal entry like any other money.
        let funded = (
            &accounts::user_wallet(user),
            &accounts::agent_available(agent),
        );
        let entry = format!("{agent}:initial balance");
        post_entry(&mut tx, &entry, funded, balance, (agent, agent)).await?;
    }
    tx.commit().await?;
    Ok(Json(
        json!({"id": ids::short(Kind::Agent, agent), "balance": money::display(balance)}),
    ))
}

/// Takes `amount` out of the user's wallet (locked until the transaction
/// ends); the seed's answer when it holds less.
async fn debit_wallet(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    user: Uuid,
    amount: Decimal,
) -> Result<(), ApiError> {
    let held: Option<Decimal> =
        sqlx::query_scalar("SELECT balance FROM baseline_wallets WHERE user_id = $1 FOR UPDATE")
            .bind(user)
            .fetch_optional(&mut **tx)
            .await?;
    match held {
        None => Err(ApiError::BadRequest(
            schemas::reply::WALLET_NOT_FOUND.into(),
        )),
        Some(held) if held < amount => Err(ApiError::BadRequest(
            schemas::reply::INSUFFICIENT_WALLET_FUNDS.into(),
        )),
        Some(held) => {
            sqlx::query("UPDATE baseline_wallets SET balance = $2 WHERE user_id = $1")
                .bind(user)
                .bind(held - amount)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }
    }
}

/// One balanced journal entry moving `amount` from one account to another,
/// recorded under `event` and `agent` as the sink records the pipeline's.
async fn post_entry(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    entry: &str,
    (from, to): (&String, &String),
    amount: Decimal,
    (event, agent): (Uuid, Uuid),
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO journal_postings (entry_id, account, amount, currency, event_id, agent_id, occurred_at)
         VALUES ($1, $2, $3, 'USDC', $5, $6, now()), ($1, $4, -$3, 'USDC', $5, $6, now())",
    )
    .bind(entry)
    .bind(to)
    .bind(amount)
    .bind(from)
    .bind(event)
    .bind(agent)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `POST /user/wallet/fund`: outside money into the caller's wallet.
async fn fund_wallet(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    let user = user_of(&pool, &headers).await?;
    let amount = body
        .opt_amount("amount")
        .ok()
        .flatten()
        .and_then(|a| money::validate_positive(a, "USDC").ok())
        .ok_or_else(|| ApiError::BadRequest("Invalid deposit amount".into()))?;
    let mut tx = pool.begin().await?;
    let balance: Decimal = sqlx::query_scalar(
        "UPDATE baseline_wallets SET balance = balance + $2 WHERE user_id = $1 RETURNING balance",
    )
    .bind(user)
    .bind(amount)
    .fetch_one(&mut *tx)
    .await?;
    post_entry(
        &mut tx,
        &format!("{}:wallet-funded", Uuid::new_v4()),
        (
            &accounts::external_funding("USDC"),
            &accounts::user_wallet(user),
        ),
        amount,
        (user, user),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(
        json!({"success": true, "balance": money::display(balance)}),
    ))
}

/// One SQL transaction per deposit: lock, check, update, journal, commit.
async fn deposit(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    let user = user_of(&pool, &headers).await?;
    let agent_text = body.str(
        "agentid",
        ids::ID_TEXT_MAX,
        "userid, agentid, and amount are required.",
    )?;
    let agent = ids::parse(Kind::Agent, &agent_text)
        .map_err(|_| ApiError::NotFound("Agent not found".into()))?;
    let amount = body
        .opt_amount("amount")
        .ok()
        .flatten()
        .and_then(|a| money::validate_positive(a, "USDC").ok())
        .ok_or_else(|| ApiError::BadRequest("Invalid deposit amount".into()))?;
    let event = Uuid::new_v4();
    let mut tx = pool.begin().await?;
    // Wallet first, then the agent: every transaction locks in this order.
    debit_wallet(&mut tx, user, amount).await?;
    let balance: Option<Decimal> =
        sqlx::query_scalar("SELECT balance FROM agents WHERE id = $1 AND user_id = $2 FOR UPDATE")
            .bind(agent)
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
    let balance = balance.ok_or_else(|| ApiError::NotFound("Agent not found".into()))? + amount;
    sqlx::query(
        "UPDATE agents SET balance = $2, version = version + 1, updated_at = now() WHERE id = $1",
    )
    .bind(agent)
    .bind(balance)
    .execute(&mut *tx)
    .await?;
    let entry = format!("{event}:deposit");
    let funded = (
        &accounts::user_wallet(user),
        &accounts::agent_available(agent),
    );
    post_entry(&mut tx, &entry, funded, amount, (event, agent)).await?;
    sqlx::query(
        "INSERT INTO transactions (event_id, agent_id, user_id, kind, amount, currency, balance_after, occurred_at)
         VALUES ($1, $2, $3, 'deposit', $4, 'USDC', $5, now())",
    )
    .bind(event)
    .bind(agent)
    .bind(user)
    .bind(amount)
    .bind(balance)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(
        json!({"success": true, "updatedBalance": money::display(balance)}),
    ))
}

/// A payment in one SQL transaction: lock both agents (in id order, so two
/// opposite payments cannot deadlock), then either record it as waiting for
/// approval or check, move and record it.
async fn pay(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    let user = user_of(&pool, &headers).await?;
    let missing =
        "Required fields missing: senderagentid, receiveragentid, paymentdetails, name, type";
    let agent = |field: &str| -> Result<Uuid, ApiError> {
        let text = body.str(field, ids::ID_TEXT_MAX, missing)?;
        ids::parse(Kind::Agent, &text).map_err(|_| ApiError::NotFound("Agent not found".into()))
    };
    let (sender, receiver) = (agent("senderagentid")?, agent("receiveragentid")?);
    let amount = match body.0.get("paymentdetails") {
        Some(Value::Object(d)) => JsonObject(d.clone()).opt_amount("amount")?,
        _ => None,
    }
    .and_then(|a| money::validate_positive(a, "USDC").ok())
    .ok_or_else(|| {
        ApiError::BadRequest("Invalid payment details. Amount must be positive.".into())
    })?;
    let payment = Uuid::new_v4();
    let mut tx = pool.begin().await?;
    let waits = lock_pair(&mut tx, user, sender, receiver).await?;
    if !waits {
        transfer(&mut tx, sender, receiver, amount, payment).await?;
    }
    let (status, approval) = if waits {
        ("New", "Waiting for Sender Approval")
    } else {
        ("Confirmed", "Approved")
    };
    sqlx::query(
        "INSERT INTO payments (id, sender_agent_id, receiver_agent_id, sender_user_id, name, payment_type,
            amount, currency, method, tags, status, approval_status, approval_required, created_at,
            approved_at, version)
         VALUES ($1, $2, $3, $4, 'load', 'INTERNAL', $5, 'USDC', 'CRYPTO_ADDRESS', '{}', $6, $7, $8, now(),
            CASE WHEN $8 THEN NULL ELSE now() END, 1)",
    )
    .bind(payment)
    .bind(sender)
    .bind(receiver)
    .bind(user)
    .bind(amount)
    .bind(status)
    .bind(approval)
    .bind(waits)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(json!({
        "id": ids::short(Kind::Payee, payment),
        "status": status,
        "approvalstatus": approval,
    })))
}

/// `setApprove`: lock the waiting payment, then its agents; check and move.
async fn approve(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    let user = user_of(&pool, &headers).await?;
    let text = body.str("paymentId", ids::ID_TEXT_MAX, "Payment ID is required")?;
    let not_found = || ApiError::NotFound("Payment not found".into());
    let payment = ids::parse(Kind::Payee, &text).map_err(|_| not_found())?;
    let mut tx = pool.begin().await?;
    let row: Option<(Uuid, Uuid, Decimal)> = sqlx::query_as(
        "SELECT sender_agent_id, receiver_agent_id, amount FROM payments
         WHERE id = $1 AND sender_user_id = $2 AND status = 'New'
           AND approval_status = 'Waiting for Sender Approval' FOR UPDATE",
    )
    .bind(payment)
    .bind(user)
    .fetch_optional(&mut *tx)
    .await?;
    let (sender, receiver, amount) = row.ok_or_else(not_found)?;
    lock_pair(&mut tx, user, sender, receiver).await?;
    transfer(&mut tx, sender, receiver, amount, payment).await?;
    sqlx::query(
        "UPDATE payments SET status = 'Confirmed', approval_status = 'Approved', approved_at = now(),
            version = version + 1 WHERE id = $1",
    )
    .bind(payment)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(json!({
        "message": "Approval Status Done.",
        "status": "Confirmed",
        "approvalstatus": "Approved",
    })))
}

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// Locks sender and receiver (in id order); the sender must be `user`'s.
/// Answers whether the sender's payments wait for approval.
async fn lock_pair(
    tx: &mut Tx,
    user: Uuid,
    sender: Uuid,
    receiver: Uuid,
) -> Result<bool, ApiError> {
    let rows: Vec<(Uuid, Uuid, bool)> = sqlx::query_as(
        "SELECT id, user_id, require_approval_for_all FROM agents WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind([sender, receiver].as_slice())
    .fetch_all(&mut **tx)
    .await?;
    let from = rows.iter().find(|r| r.0 == sender && r.1 == user);
    match (from, rows.iter().any(|r| r.0 == receiver)) {
        (Some(from), true) => Ok(from.2),
        _ => Err(ApiError::NotFound("Agent not found".into())),
    }
}

/// Moves `amount` between two locked agents with its journal entry.
async fn transfer(
    tx: &mut Tx,
    sender: Uuid,
    receiver: Uuid,
    amount: Decimal,
    payment: Uuid,
) -> Result<(), ApiError> {
    let moved = sqlx::query(
        "UPDATE agents SET balance = balance + CASE WHEN id = $1 THEN -$3 ELSE $3 END,
            version = version + 1, updated_at = now()
         WHERE id IN ($1, $2) AND (id <> $1 OR balance >= $3)",
    )
    .bind(sender)
    .bind(receiver)
    .bind(amount)
    .execute(&mut **tx)
    .await?;
    if moved.rows_affected() != 2 {
        return Err(ApiError::BadRequest(
            "Insufficient balance in sender agent's wallet".into(),
        ));
    }
    let moved = (
        &accounts::agent_available(sender),
        &accounts::agent_available(receiver),
    );
    post_entry(
        tx,
        &format!("{payment}:pay"),
        moved,
        amount,
        (payment, sender),
    )
    .await
}

async fn get_agent(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user = user_of(&pool, &headers).await?;
    let agent =
        ids::parse(Kind::Agent, &id).map_err(|_| ApiError::NotFound("Agent not found".into()))?;
    let row: Option<(String, Decimal, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT name, balance, created_at FROM agents WHERE id = $1 AND user_id = $2",
    )
    .bind(agent)
    .bind(user)
    .fetch_optional(&pool)
    .await?;
    let (name, balance, created) =
        row.ok_or_else(|| ApiError::NotFound("Agent not found".into()))?;
    let view = AgentView {
        policies: Default::default(),
        agent_id: agent,
        user_id: user,
        name,
        description: String::new(),
        wallet_address: None,
        currency: "USDC".into(),
        rules: PaymentRules::default(),
        tags: vec![],
        status: "active".into(),
        created_ms: created.timestamp_millis(),
        balance,
    };
    Ok(Json(agent_json(&view, "ledger")))
}

/// `POST /v1/opportunities`: the same parsing and scoring, then one INSERT
/// (the read model's row) — what a plain service would do.
async fn create_opportunity(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let user = user_of(&pool, &headers).await?;
    let spec = gateway::revenue::opportunities::parse_spec(&body.0)?;
    let o = processors::opportunities::scoring::score(
        &spec,
        Uuid::new_v4(),
        user,
        chrono::Utc::now().timestamp_millis(),
    );
    let mut tx = pool.begin().await?;
    let mut rows = connectors::postgres_sink::revenue::RevenueRows::default();
    rows.opportunity(&o);
    rows.write(&mut tx).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(json!(o.view()))))
}

/// `GET /v1/opportunities`: the gateway's parser and read-model query.
async fn list_opportunities(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    axum::extract::Query(params): axum::extract::Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let user = user_of(&pool, &headers).await?;
    let request = gateway::revenue::opportunities::parse_list(user, &params)?;
    let (rows, total) = connectors::read_model::opportunities::list(&pool, &request.query).await?;
    let items: Vec<Value> = rows.iter().map(|o| json!(o.view())).collect();
    Ok(Json(
        json!({"opportunities": items, "pagination": {"total": total}}),
    ))
}

/// The baseline's own tables: each tenant's chain head, and each
/// subscriber's recurring revenue — one row each, locked or read per event.
pub async fn prepare(pool: &PgPool) -> Result<(), ApiError> {
    for ddl in [
        "CREATE TABLE IF NOT EXISTS baseline_ledger_heads (tenant_id uuid PRIMARY KEY,
            sequence bigint NOT NULL, head text NOT NULL)",
        "CREATE TABLE IF NOT EXISTS baseline_subscribers (tenant_id uuid NOT NULL, key text NOT NULL,
            subscriber jsonb NOT NULL, PRIMARY KEY (tenant_id, key))",
        "CREATE TABLE IF NOT EXISTS baseline_wallets (user_id uuid PRIMARY KEY, balance numeric NOT NULL)",
    ] {
        sqlx::query(ddl).execute(pool).await?;
    }
    Ok(())
}

/// `POST /v1/revenue/events`: the gateway's parser and the revenue
/// machine's pure logic (the same entry, chain and movement) in one SQL
/// transaction — lock the tenant's chain head row, look up the natural key
/// and the one subscriber the event touches, insert the entry and move the
/// daily aggregates with the sink's own statements, write head and
/// subscriber back. What a plain service with the same model would do
/// (monthly targets and milestones left out, in its favour).
async fn record_revenue(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    use processors::revenue::{RevenueMachine, RevenueState, Subscriber};
    use processors::runtime::machine::{Ids, Machine, Position};
    use schemas::reply::Outcome;
    let user = user_of(&pool, &headers).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let request = gateway::revenue::ledger::parse_event(&body.0, now)?;
    if let Some(k) = &request.natural_key {
        if let Some(e) = connectors::read_model::revenue::by_natural_key(&pool, user, k).await? {
            return Ok((StatusCode::CREATED, Json(json!(e.recorded_view()))));
        }
    }
    let key = format!("{}|{}", request.currency, request.customer_id);
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO baseline_ledger_heads (tenant_id, sequence, head) VALUES ($1, 0, $2)
         ON CONFLICT (tenant_id) DO NOTHING",
    )
    .bind(user)
    .bind(schemas::revenue::ledger::GENESIS)
    .execute(&mut *tx)
    .await?;
    let (sequence, head): (i64, String) = sqlx::query_as(
        "SELECT sequence, head FROM baseline_ledger_heads WHERE tenant_id = $1 FOR UPDATE",
    )
    .bind(user)
    .fetch_one(&mut *tx)
    .await?;
    let subscriber: Option<sqlx::types::Json<Subscriber>> = sqlx::query_scalar(
        "SELECT subscriber FROM baseline_subscribers WHERE tenant_id = $1 AND key = $2",
    )
    .bind(user)
    .bind(&key)
    .fetch_optional(&mut *tx)
    .await?;
    let mut state = Some(RevenueState {
        tenant: user,
        sequence,
        head,
        subscribers: subscriber.map(|s| (key.clone(), s.0)).into_iter().collect(),
        ..RevenueState::default()
    });
    let command = schemas::Command {
        id: Uuid::new_v4(),
        agent_id: schemas::revenue::ledger_key(user),
        user_id: user,
        correlation_id: None,
        timestamp_ms: now,
        payload: schemas::CommandPayload::RecordRevenue(Box::new(request)),
    };
    let at = Position {
        partition: 0,
        offset: sequence,
        sub: 0,
    };
    let step = RevenueMachine.apply(&mut state, &command, &Ids::new("baseline", at, Some(user)));
    let entry = match step.reply {
        Some(Outcome::RevenueEntry(e)) => e,
        Some(Outcome::Rejected { message, .. }) => return Err(ApiError::BadRequest(message)),
        other => return Err(ApiError::Internal(format!("{other:?}"))),
    };
    let mut rows = connectors::postgres_sink::ledger::LedgerRows::default();
    rows.entry(&entry);
    rows.write(&mut tx).await?;
    sqlx::query("UPDATE baseline_ledger_heads SET sequence = $2, head = $3 WHERE tenant_id = $1")
        .bind(user)
        .bind(entry.sequence)
        .bind(&entry.transaction_hash)
        .execute(&mut *tx)
        .await?;
    if let Some(s) = state.as_ref().and_then(|s| s.subscribers.get(&key)) {
        sqlx::query(
            "INSERT INTO baseline_subscribers (tenant_id, key, subscriber) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, key) DO UPDATE SET subscriber = EXCLUDED.subscriber",
        )
        .bind(user)
        .bind(&key)
        .bind(sqlx::types::Json(s))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(json!(entry.recorded_view()))))
}

/// The baseline's routes over `pool` (already migrated).
pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/users", post(sign_up))
        .route("/agents/create", post(create_agent))
        .route("/agents/deposit", post(deposit))
        .route("/user/wallet/fund", post(fund_wallet))
        .route("/payments/register", post(pay))
        .route("/payments/setApprove", post(approve))
        .route("/agentsWith/{id}", get(get_agent))
        .route(
            "/v1/opportunities",
            post(create_opportunity).get(list_opportunities),
        )
        .route("/v1/revenue/events", post(record_revenue))
        .route("/health", get(|| async { "ok" }))
        .with_state(pool)
}
