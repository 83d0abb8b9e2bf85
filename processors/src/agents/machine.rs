//! The agent bank as a keyed machine: one state per agent and one per user
//! wallet ([`BankState`]), driven by the generic runtime. Routing (interest
//! ticks go to every agent with savings, wallet commands to the user's
//! wallet) and the bank's business metrics live here; the decisions are
//! [`apply`] and [`wallet::apply`].

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use schemas::interest::RateSchedule;
use schemas::reply::RejectCode;
use schemas::{Command, CommandPayload, Event, EventPayload};

use super::wallet::{self, WalletState};
use super::{apply, AgentState};
use crate::runtime::machine::{Ids, Machine, Route, Step};

/// One key's state: an agent, or a user's wallet (keyed by the user id).
#[derive(Debug, Clone, PartialEq)]
pub enum BankState {
    Agent(Box<AgentState>),
    Wallet(WalletState),
}

/// The checkpoint form: an agent as it always was (checkpoints written
/// before wallets restore unchanged); a wallet under a `wallet` key.
#[derive(Serialize, Deserialize)]
struct WalletRecord<W> {
    wallet: W,
}

impl Serialize for BankState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BankState::Agent(a) => a.serialize(s),
            BankState::Wallet(w) => WalletRecord { wallet: w }.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for BankState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Via `Value` for the reason `recent_compat` gives (exact numbers).
        let v = serde_json::Value::deserialize(d)?;
        let is_wallet = v.get("wallet").is_some() && v.get("view").is_none();
        if is_wallet {
            let r: WalletRecord<WalletState> =
                serde_json::from_value(v).map_err(serde::de::Error::custom)?;
            Ok(BankState::Wallet(r.wallet))
        } else {
            let a: AgentState = serde_json::from_value(v).map_err(serde::de::Error::custom)?;
            Ok(BankState::Agent(Box::new(a)))
        }
    }
}

impl BankState {
    /// The agent, if this key is one.
    pub fn agent(&self) -> Option<&AgentState> {
        match self {
            BankState::Agent(a) => Some(a),
            BankState::Wallet(_) => None,
        }
    }

    /// The wallet, if this key is one.
    pub fn wallet(&self) -> Option<&WalletState> {
        match self {
            BankState::Wallet(w) => Some(w),
            BankState::Agent(_) => None,
        }
    }
}

/// The agent machine, with the savings rate history interest accrues by.
#[derive(Debug, Clone)]
pub struct AgentMachine {
    pub rates: RateSchedule,
}

impl AgentMachine {
    pub fn new(rates: RateSchedule) -> Self {
        AgentMachine { rates }
    }
}

impl Machine for AgentMachine {
    type State = BankState;

    fn route(&self, command: &Command) -> Route {
        match command.payload {
            // A tick: every agent of the partition with savings accrues, each once.
            CommandPayload::AccrueInterest(_) => Route::Broadcast,
            _ => Route::Key(command.agent_id),
        }
    }

    fn apply(&self, state: &mut Option<BankState>, command: &Command, ids: &Ids<'_>) -> Step {
        let wallet_command = wallet::is_wallet_command(&command.payload);
        // Each kind of key takes only its own commands: a wallet's command
        // never reaches an agent's state, nor the reverse.
        let applied = match (state.take(), wallet_command) {
            (Some(BankState::Agent(a)), true) => {
                *state = Some(BankState::Agent(a));
                return Step::rejected(RejectCode::Invalid, "not a command for an agent");
            }
            (Some(BankState::Wallet(w)), false) => {
                *state = Some(BankState::Wallet(w));
                return Step::rejected(RejectCode::NotFound, "Agent not found");
            }
            (taken, true) => {
                let mut w = taken.and_then(|s| match s {
                    BankState::Wallet(w) => Some(w),
                    BankState::Agent(_) => None,
                });
                let applied = wallet::apply(&mut w, command, ids.position(), |i| ids.id(i));
                *state = w.map(BankState::Wallet);
                applied
            }
            (taken, false) => {
                let mut a = taken.and_then(|s| match s {
                    BankState::Agent(a) => Some(*a),
                    BankState::Wallet(_) => None,
                });
                let applied = apply(&mut a, command, ids.position(), &self.rates, |i| ids.id(i));
                *state = a.map(|a| BankState::Agent(Box::new(a)));
                applied
            }
        };
        Step {
            events: applied.events,
            commands: applied.commands,
            settlements: applied.settlements,
            reply: applied.reply,
            ..Step::default()
        }
    }

    fn wants_broadcast(&self, state: &BankState) -> bool {
        // Ticks accrue interest and expire waiting approvals; wallets have neither.
        state
            .agent()
            .is_some_and(|a| !a.savings.is_empty() || !a.expiries.is_empty())
    }

    /// Payments by outcome, volume by currency, deposits.
    fn observe(&self, event: &Event) {
        use EventPayload as P;
        let (outcome, change) = match &event.payload {
            P::PaymentConfirmed(c) => ("settled", c),
            P::PaymentFailed(c) => ("failed", c),
            P::PaymentDeclined(c) => ("declined", c),
            P::FundsDeposited(d) => {
                metrics::counter!("agentbank_deposits_total", "currency" => d.currency.clone())
                    .increment(1);
                return;
            }
            _ => return,
        };
        let currency = change.payment.currency.clone();
        metrics::counter!("agentbank_payments_total", "outcome" => outcome, "currency" => currency.clone())
            .increment(1);
        if outcome == "settled" {
            // Micro-units: counters are integers, amounts have 6 places.
            let micros = (change.payment.amount * Decimal::from(1_000_000))
                .trunc()
                .try_into()
                .unwrap_or(0u64);
            metrics::counter!("agentbank_payment_volume_micros_total", "currency" => currency)
                .increment(micros);
        }
    }
}
