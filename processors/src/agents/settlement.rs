//! An agent's on-chain transfers, the processor's half: ask the settlement
//! service for a transfer (a [`SettlementRequest`] output), hold what must be
//! held until its result, and apply the result once (`CompleteSettlement`).
//!
//! - Faucet (sandbox agent creation) and deposits: the treasury sends to the
//!   agent's custodial wallet; the ledger credit happens at once, as without a
//!   chain, and the result only records the transaction.
//! - Withdrawals to an address: available → reserved now; on `confirmed`
//!   reserved → `external:<cur>:onchain` — or, to the user's own custodial
//!   wallet, reserved → the wallets' transit and a `SettleWallet` step that
//!   lands it in the user's wallet; on `failed` back to available.
//! - EXTERNAL payments to an address ([`super::payments`]): the payment's
//!   reservation stays until the result confirms or fails it.
//!
//! Every transfer waits in [`AgentState::settling`] under its settlement id;
//! a result without an entry there is a replay and changes nothing.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use schemas::command::{SettleWallet, Withdraw};
use schemas::event::{accounts, FundsMovement, TransferSettled};
use schemas::payment;
use schemas::reply::{Outcome, RejectCode};
use schemas::settlement::{self, asset, kind, wallet, SettlementRequest, SettlementResult};
use schemas::{Command, CommandPayload, EventPayload};

use super::{payments, post, AgentState, Decided, Decision, Position};

/// Most transfers one agent may have waiting for their result: bounds the
/// agent's state (every checkpoint carries it).
pub const SETTLING_MAX: usize = 1_000;

/// Native coin the sandbox faucet sends a new agent's wallet for gas.
pub const FAUCET_GAS_ETH: Decimal = Decimal::from_parts(1, 0, 0, false, 2);

/// A transfer waiting for its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settling {
    pub kind: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    /// A withdrawal to the user's own custodial wallet.
    #[serde(default)]
    pub to_user_wallet: bool,
}

pub(super) fn room(s: &AgentState, needed: usize) -> Result<(), (RejectCode, String)> {
    if s.settling.len() + needed > SETTLING_MAX {
        return Err((
            RejectCode::Conflict,
            format!("Agent has {SETTLING_MAX} on-chain transfers settling; retry once some finish"),
        ));
    }
    Ok(())
}

/// A request from the agent's own wallet or the treasury, to the agent's
/// wallet unless `to_address` is set afterwards.
fn request(
    s: &AgentState,
    cmd: &Command,
    id: Uuid,
    kind: &str,
    (asset, amount): (&str, Decimal),
    from_wallet: &str,
) -> SettlementRequest {
    SettlementRequest {
        id,
        agent_id: s.view.agent_id,
        user_id: s.view.user_id,
        kind: kind.into(),
        asset: asset.into(),
        amount,
        from_wallet: from_wallet.into(),
        to_address: None,
        payment_id: None,
        timestamp: cmd.timestamp_ms,
    }
}

/// Records the transfer as waiting for its result and returns its request.
fn ask(s: &mut AgentState, r: SettlementRequest) -> SettlementRequest {
    s.settling.insert(
        r.id,
        Settling {
            kind: r.kind.clone(),
            amount: r.amount,
            to_user_wallet: false,
        },
    );
    r
}

/// Sandbox faucet for a new agent: gas, then the initial balance (if any).
pub(super) fn faucet(
    s: &mut AgentState,
    cmd: &Command,
    initial_balance: Decimal,
) -> Vec<SettlementRequest> {
    let mut out = vec![ask(
        s,
        request(
            s,
            cmd,
            settlement::settlement_id(cmd.id, kind::FAUCET_GAS),
            kind::FAUCET_GAS,
            (asset::ETH, FAUCET_GAS_ETH),
            wallet::TREASURY,
        ),
    )];
    if !initial_balance.is_zero() {
        let token = (s.view.currency.clone(), initial_balance);
        out.push(ask(
            s,
            request(
                s,
                cmd,
                settlement::settlement_id(cmd.id, kind::FAUCET_TOKEN),
                kind::FAUCET_TOKEN,
                (&token.0, token.1),
                wallet::TREASURY,
            ),
        ));
    }
    out
}

/// A deposit mirrored on chain: the treasury sends it to the agent's wallet.
pub(super) fn mirror_deposit(
    s: &mut AgentState,
    cmd: &Command,
    amount: Decimal,
) -> Result<SettlementRequest, (RejectCode, String)> {
    room(s, 1)?;
    let currency = s.view.currency.clone();
    Ok(ask(
        s,
        request(
            s,
            cmd,
            settlement::settlement_id(cmd.id, kind::DEPOSIT),
            kind::DEPOSIT,
            (&currency, amount),
            wallet::TREASURY,
        ),
    ))
}

/// A withdrawal to an address: hold the amount, ask for the transfer. The
/// caller's answer is the balance after the hold; the result comes later.
pub(super) fn withdraw_on_chain(
    s: &mut AgentState,
    cmd: &Command,
    w: &Withdraw,
    to: &str,
) -> Decided {
    if !settlement::is_address(to) {
        return Err((RejectCode::Invalid, "Invalid wallet address format".into()));
    }
    room(s, 1)?;
    let memo = "withdrawal";
    let journal = post(
        s,
        cmd.id,
        -w.amount,
        memo,
        &accounts::agent_reserved(s.view.agent_id),
    );
    s.reserved += w.amount;
    let payload = EventPayload::FundsWithdrawn(FundsMovement {
        amount: w.amount,
        currency: w.currency.clone(),
        balance_after: s.view.balance,
        memo: memo.into(),
        journal,
    });
    let request = ask(
        s,
        SettlementRequest {
            to_address: Some(to.to_string()),
            ..request(
                s,
                cmd,
                settlement::settlement_id(cmd.id, kind::WITHDRAWAL),
                kind::WITHDRAWAL,
                (&w.currency, w.amount),
                wallet::AGENT,
            )
        },
    );
    if let Some(waiting) = s.settling.get_mut(&request.id) {
        waiting.to_user_wallet = w.to_user_wallet;
    }
    Ok(Some(
        Decision::answer(vec![payload], Outcome::Agent(Box::new(s.view.clone())))
            .with_transfers(vec![request]),
    ))
}

/// An approved EXTERNAL payment to an address: ask for its transfer; the
/// reservation stays until the result.
pub(super) fn pay_on_chain(
    s: &mut AgentState,
    payment: &schemas::payment::Payment,
    to: &str,
    cmd: &Command,
) -> SettlementRequest {
    ask(
        s,
        SettlementRequest {
            to_address: Some(to.to_string()),
            payment_id: Some(payment.payment_id.clone()),
            ..request(
                s,
                cmd,
                settlement::settlement_id(payment.id(), kind::PAYMENT),
                kind::PAYMENT,
                (&payment.currency, payment.amount),
                wallet::AGENT,
            )
        },
    )
}

/// Applies a settlement result once; a replay (no waiting entry) does nothing.
pub(super) fn complete(
    state: Option<&mut AgentState>,
    r: &SettlementResult,
    at: Position,
) -> Decided {
    let Some(s) = state else {
        return Ok(None);
    };
    let Some(waiting) = s.settling.remove(&r.request_id) else {
        return Ok(None);
    };
    let agent = s.view.agent_id;
    let currency = s.view.currency.clone();
    if waiting.kind == kind::PAYMENT {
        let id = payment::uuid(r.payment_id.as_deref().unwrap_or_default());
        return Ok(payments::settle_on_chain(s, id, r).map(Decision::events_only));
    }
    let lands_in_wallet =
        waiting.kind == kind::WITHDRAWAL && waiting.to_user_wallet && r.confirmed();
    let journal = (waiting.kind == kind::WITHDRAWAL).then(|| {
        let to = if lands_in_wallet {
            accounts::wallet_transit(&currency)
        } else if r.confirmed() {
            accounts::onchain_outflow(&currency)
        } else {
            s.view.balance += waiting.amount;
            accounts::agent_available(agent)
        };
        s.reserved -= waiting.amount;
        payments::entry(
            format!("{}:{}", r.request_id, r.status),
            accounts::agent_reserved(agent),
            to,
            waiting.amount,
        )
    });
    let event = EventPayload::TransferSettled(TransferSettled {
        settlement_id: r.request_id.to_string(),
        kind: waiting.kind,
        asset: r.asset.clone(),
        amount: waiting.amount,
        to_address: r.to_address.clone(),
        status: r.status.clone(),
        tx_hash: r.tx_hash.clone(),
        block_number: r.block_number,
        reason: r.reason.clone(),
        balance_after: s.view.balance,
        journal,
    });
    let mut decision = Decision::events_only(vec![event]);
    if lands_in_wallet {
        let landing = CommandPayload::SettleWallet(SettleWallet {
            agent_id: agent.to_string(),
            amount: waiting.amount,
            currency,
            request_id: None,
            refund_reason: None,
            origin_partition: at.partition,
            origin_offset: at.offset,
            origin_sub: at.sub as i32,
        });
        decision.sagas.push((s.view.user_id, landing));
    }
    Ok(Some(decision))
}
