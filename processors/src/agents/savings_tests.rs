//! The savings vault's money rules on the state machine: deposits, ticks and
//! withdrawals post balanced entries; the vault accounts equal the positions;
//! interest posted never exceeds the formula; and how a period is cut into
//! ticks changes nothing a withdrawal pays.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rust_decimal::{Decimal, MathematicalOps};
use uuid::Uuid;

use super::*;
use schemas::command::{AccrueInterest, CreateAgent, DepositSavings, WithdrawSavings};
use schemas::interest::{RateSchedule, YEAR_MS};

const DAY_MS: i64 = 86_400_000;

/// One agent, its state, and every posting it produced, per account.
struct Vault {
    agent: Uuid,
    user: Uuid,
    state: Option<AgentState>,
    rates: RateSchedule,
    ledger: BTreeMap<String, Decimal>,
    offset: i64,
}

impl Vault {
    fn new(balance: Decimal, rates: &str) -> Self {
        let mut v = Vault {
            agent: Uuid::from_u128(1),
            user: Uuid::from_u128(2),
            state: None,
            rates: RateSchedule::parse(rates).unwrap(),
            ledger: BTreeMap::new(),
            offset: 0,
        };
        v.run(
            0,
            CommandPayload::CreateAgent(CreateAgent {
                name: "saver".into(),
                description: String::new(),
                wallet_address: None,
                currency: "USDC".into(),
                daily_limit: None,
                transaction_limit: None,
                require_approval_for_all: false,
                require_approval_above_amount: None,
                tags: vec![],
                initial_balance: balance,
                settle_on_chain: false,
            }),
        );
        v
    }

    fn run(&mut self, at_ms: i64, payload: CommandPayload) -> Applied {
        self.offset += 1;
        let cmd = Command {
            id: Uuid::from_u128(1_000 + self.offset as u128),
            agent_id: self.agent,
            user_id: self.user,
            correlation_id: None,
            timestamp_ms: at_ms,
            payload,
        };
        let at = Position {
            partition: 0,
            offset: self.offset,
            sub: 0,
        };
        let offset = self.offset;
        let applied = apply(&mut self.state, &cmd, at, &self.rates, |i| {
            Uuid::from_u128(((offset as u128) << 16) | i as u128)
        });
        for e in &applied.events {
            if let Some(j) = e.payload.journal() {
                assert!(j.is_balanced(), "{j:?}");
                for p in &j.postings {
                    *self.ledger.entry(p.account.clone()).or_default() += p.amount;
                }
            }
        }
        applied
    }

    fn deposit(&mut self, at_ms: i64, id: u128, amount: Decimal) -> Applied {
        self.run(
            at_ms,
            CommandPayload::DepositSavings(DepositSavings {
                investment_id: Uuid::from_u128(id).to_string(),
                amount,
                currency: "USDC".into(),
            }),
        )
    }

    fn tick(&mut self, through: i64) {
        self.run(
            through,
            CommandPayload::AccrueInterest(AccrueInterest { through }),
        );
    }

    fn withdraw(&mut self, at_ms: i64, id: u128) -> Applied {
        self.run(
            at_ms,
            CommandPayload::WithdrawSavings(WithdrawSavings {
                investment_id: Uuid::from_u128(id).to_string(),
            }),
        )
    }

    fn s(&self) -> &AgentState {
        self.state.as_ref().unwrap()
    }

    fn account(&self, name: &str) -> Decimal {
        self.ledger.get(name).copied().unwrap_or_default()
    }

    /// The ledger agrees with the state, and posted interest with the formula.
    fn check(&self) -> Result<(), TestCaseError> {
        let s = self.s();
        prop_assert!(s.view.balance >= Decimal::ZERO);
        prop_assert_eq!(
            self.account(&accounts::agent_available(self.agent)),
            s.view.balance
        );
        let principal: Decimal = s.savings.values().map(|p| p.principal).sum();
        let posted: Decimal = s.savings.values().map(|p| p.interest_posted).sum();
        prop_assert_eq!(
            self.account(&accounts::savings_principal(self.agent)),
            principal
        );
        prop_assert_eq!(
            self.account(&accounts::savings_interest(self.agent)),
            posted
        );
        prop_assert!(self.ledger.values().copied().sum::<Decimal>().is_zero());
        for p in s.savings.values() {
            let exact = p.principal
                * (p.rate_ms / (Decimal::ONE_HUNDRED * Decimal::from(YEAR_MS))).exp()
                - p.principal;
            prop_assert!(
                p.interest_posted <= exact,
                "{} > {}",
                p.interest_posted,
                exact
            );
            prop_assert!(exact - p.interest_posted < Decimal::new(1, 6));
        }
        Ok(())
    }
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

#[test]
fn a_year_at_four_and_a_half_percent_pays_the_formula() {
    let mut v = Vault::new(d("1000"), "4.5");
    let Some(Outcome::Done) = v.deposit(0, 7, d("100")).reply else {
        panic!("deposit refused")
    };
    assert_eq!(v.s().view.balance, d("900"));
    v.tick(180 * DAY_MS);
    v.tick(365 * DAY_MS);
    // 100·e^0.045 = 104.602785…
    assert_eq!(
        v.s().savings[&Uuid::from_u128(7)].interest_posted,
        d("4.602785")
    );
    v.tick(365 * DAY_MS); // a repeated tick posts nothing
    let w = v.withdraw(365 * DAY_MS, 7);
    assert!(matches!(w.reply, Some(Outcome::Done)), "{:?}", w.reply);
    assert_eq!(v.s().view.balance, d("1004.602785"));
    assert!(v.s().savings.is_empty());
    assert_eq!(
        v.account(&accounts::savings_principal(v.agent)),
        Decimal::ZERO
    );
    assert_eq!(
        v.account(&accounts::savings_interest(v.agent)),
        Decimal::ZERO
    );
    assert_eq!(
        v.account(&accounts::interest_expense("USDC")),
        d("-4.602785")
    );
    v.check().unwrap();
}

#[test]
fn a_position_keeps_the_rate_it_opened_with() {
    // 10% until mid-year, 0% after: a position opened at 10% earns 10% for
    // its whole year; one opened after the change earns nothing.
    let mut v = Vault::new(d("2000"), "1970-01-01T00:00:00Z=10,1970-07-02T12:00:00Z=0");
    v.deposit(0, 1, d("1000"));
    assert_eq!(v.s().savings[&Uuid::from_u128(1)].rate_pct, Some(d("10")));
    v.deposit(200 * DAY_MS, 2, d("500"));
    assert_eq!(v.s().savings[&Uuid::from_u128(2)].rate_pct, Some(d("0")));
    v.tick(300 * DAY_MS);
    v.withdraw(365 * DAY_MS, 1);
    // 1000·e^0.1 = 1105.170918…; plus the 500 left available.
    assert_eq!(v.s().view.balance, d("1605.170918"));
    v.withdraw(365 * DAY_MS, 2);
    assert_eq!(v.s().view.balance, d("2105.170918"));
    v.check().unwrap();
}

#[test]
fn an_older_position_without_a_rate_takes_the_one_at_its_opening() {
    let mut v = Vault::new(d("1000"), "1970-01-01T00:00:00Z=10,1970-07-02T12:00:00Z=0");
    v.deposit(0, 1, d("1000"));
    // As a checkpoint written before rates were recorded holds it.
    let s = v.state.as_mut().unwrap();
    s.savings.get_mut(&Uuid::from_u128(1)).unwrap().rate_pct = None;
    v.withdraw(365 * DAY_MS, 1);
    assert_eq!(v.s().view.balance, d("1105.170918"));
}

#[test]
fn bad_savings_commands_are_refused_and_change_nothing() {
    let mut v = Vault::new(d("10"), "4.5");
    let before = v.s().clone();
    for (applied, code) in [
        (v.deposit(0, 1, d("11")), RejectCode::Invalid),
        (v.deposit(0, 1, d("0")), RejectCode::Invalid),
        (v.deposit(0, 0, d("1")), RejectCode::Conflict),
        (v.withdraw(0, 9), RejectCode::NotFound),
    ] {
        assert!(
            matches!(&applied.reply, Some(Outcome::Rejected { code: c, .. }) if *c == code),
            "{:?}",
            applied.reply
        );
        assert!(applied.events.is_empty());
    }
    let mut after = v.s().clone();
    after.recent.clear();
    let mut before = before;
    before.recent.clear();
    assert_eq!(after, before);
}

#[derive(Debug, Clone)]
enum Op {
    Deposit(u8, i64),
    Tick,
    Withdraw(u8),
}

fn ops() -> impl Strategy<Value = Vec<(i64, Op)>> {
    let op = prop_oneof![
        (0u8..4, 1i64..50_000_000_000).prop_map(|(i, a)| Op::Deposit(i, a)),
        Just(Op::Tick),
        (0u8..4).prop_map(Op::Withdraw),
    ];
    prop::collection::vec((0i64..60 * DAY_MS, op), 1..40)
}

/// Replays `ops` (gaps between them in ms); `extra_ticks` adds a tick at
/// each of these many evenly spread points inside every gap.
fn replay(ops: &[(i64, Op)], rates: &str, extra_ticks: i64) -> Result<Vault, TestCaseError> {
    let mut v = Vault::new(d("1000000"), rates);
    let mut now = 0;
    for (gap, op) in ops {
        for k in 1..=extra_ticks {
            v.tick(now + gap * k / (extra_ticks + 1));
            v.check()?;
        }
        now += gap;
        match op {
            Op::Deposit(i, micros) => {
                v.deposit(now, 100 + *i as u128, Decimal::new(*micros, 6));
            }
            Op::Tick => v.tick(now),
            Op::Withdraw(i) => {
                v.withdraw(now, 100 + *i as u128);
            }
        }
        v.check()?;
    }
    // Close everything at the end.
    for i in 0..4 {
        v.withdraw(now, 100 + i);
    }
    v.check()?;
    Ok(v)
}

proptest! {
    /// Any sequence keeps the ledger balanced and equal to the state, posts
    /// at most the formula, and — however many ticks cut the periods — every
    /// withdrawal pays the same to the unit.
    #[test]
    fn the_vault_ledger_balances_and_ticks_do_not_change_what_is_paid(
        ops in ops(),
        rate in 0u32..=300_000,
        extra in 1i64..5,
    ) {
        let rates = format!("{}", Decimal::new(rate.into(), 4));
        let coarse = replay(&ops, &rates, 0)?;
        let fine = replay(&ops, &rates, extra)?;
        prop_assert_eq!(coarse.s().view.balance, fine.s().view.balance);
        prop_assert_eq!(
            coarse.account(&accounts::interest_expense("USDC")),
            fine.account(&accounts::interest_expense("USDC"))
        );
    }
}
