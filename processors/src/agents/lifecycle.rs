//! An agent after creation: its description, tags, payment rules and status
//! change by one `UpdateAgent` command, applied here in the agent's machine
//! (never read-then-written elsewhere), each change recorded as an
//! `AgentUpdated` event with the fields before and after, who asked and why.
//!
//! Statuses: `active`; `paused` — its payments (new and approvals) are
//! refused, credits from others still land, the user may still deposit and
//! withdraw; `deactivated` — final, only at zero balance with nothing open
//! (payments, savings, on-chain transfers); nothing reaches it afterwards.

use rust_decimal::Decimal;

use schemas::command::{agent_field as field, agent_status, FieldChange, UpdateAgent};
use schemas::event::{AgentUpdated, EventPayload};
use schemas::money;
use schemas::reply::{AgentView, RejectCode};
use schemas::Command;

use super::{agent_answer, not_found, AgentState, Decided};

/// Most fields one command may change (each once).
const FIELDS: [&str; 8] = [
    field::DESCRIPTION,
    field::TAGS,
    field::DAILY_LIMIT,
    field::TRANSACTION_LIMIT,
    field::REQUIRE_APPROVAL_FOR_ALL,
    field::REQUIRE_APPROVAL_ABOVE_AMOUNT,
    field::STATUS,
    field::POLICIES,
];

/// Longest key id an `api_key` change may name.
const KEY_ID_CHARS_MAX: usize = 64;

fn invalid(message: impl Into<String>) -> (RejectCode, String) {
    (RejectCode::Invalid, message.into())
}

/// Why an agent may not pay now, if it may not.
pub(super) fn may_pay(s: &AgentState) -> Result<(), (RejectCode, String)> {
    match s.view.status.as_str() {
        agent_status::PAUSED => Err(invalid(
            "Agent is paused: its payments are refused until it is resumed",
        )),
        agent_status::DEACTIVATED => Err(invalid("Agent is deactivated")),
        _ => Ok(()),
    }
}

/// Whether anything can reach the agent (a deactivated one takes nothing).
pub(super) fn is_deactivated(s: &AgentState) -> bool {
    s.view.status == agent_status::DEACTIVATED
}

/// A field's value as `UpdateAgent` and `AgentUpdated` carry it.
fn text_of(v: &AgentView, name: &str) -> Option<String> {
    let amount = |d: Option<Decimal>| d.map(|d| d.normalize().to_string());
    match name {
        field::DESCRIPTION => Some(v.description.clone()),
        field::TAGS => Some(serde_json::to_string(&v.tags).unwrap_or_default()),
        field::DAILY_LIMIT => amount(v.rules.daily_limit),
        field::TRANSACTION_LIMIT => amount(v.rules.transaction_limit),
        field::REQUIRE_APPROVAL_FOR_ALL => Some(v.rules.require_approval_for_all.to_string()),
        field::REQUIRE_APPROVAL_ABOVE_AMOUNT => amount(v.rules.require_approval_above_amount),
        field::STATUS => Some(v.status.clone()),
        field::POLICIES => Some(v.policies.text()),
        _ => None,
    }
}

/// Sets one field of `v` from its text form.
fn set(v: &mut AgentView, c: &FieldChange) -> Result<(), (RejectCode, String)> {
    let limit = |text: &Option<String>| -> Result<Option<Decimal>, (RejectCode, String)> {
        text.as_deref()
            .map(|t| {
                t.parse::<Decimal>()
                    .ok()
                    .and_then(|d| money::validate_non_negative(d, &v.currency).ok())
                    .ok_or_else(|| invalid(format!("Invalid {}", c.field)))
            })
            .transpose()
    };
    let required = || {
        c.to.clone()
            .ok_or_else(|| invalid(format!("{} needs a value", c.field)))
    };
    match c.field.as_str() {
        field::DESCRIPTION => v.description = required()?,
        field::TAGS => {
            v.tags = serde_json::from_str(&required()?)
                .map_err(|_| invalid("tags must be a list of strings"))?
        }
        field::DAILY_LIMIT => v.rules.daily_limit = limit(&c.to)?,
        field::TRANSACTION_LIMIT => v.rules.transaction_limit = limit(&c.to)?,
        field::REQUIRE_APPROVAL_ABOVE_AMOUNT => {
            v.rules.require_approval_above_amount = limit(&c.to)?
        }
        field::REQUIRE_APPROVAL_FOR_ALL => {
            v.rules.require_approval_for_all = required()?
                .parse()
                .map_err(|_| invalid("require_approval_for_all must be true or false"))?
        }
        field::STATUS => {
            let to = required()?;
            if ![
                agent_status::ACTIVE,
                agent_status::PAUSED,
                agent_status::DEACTIVATED,
            ]
            .contains(&to.as_str())
            {
                return Err(invalid("status must be active, paused or deactivated"));
            }
            v.status = to;
        }
        field::POLICIES => {
            v.policies = schemas::policy::SpendingPolicies::parse(&required()?).map_err(invalid)?
        }
        other => return Err(invalid(format!("{other} cannot be changed"))),
    }
    Ok(())
}

/// `UpdateAgent`: by the agent's owner only; a change to the current values
/// answers the agent and records nothing.
pub(super) fn update(state: Option<&mut AgentState>, cmd: &Command, u: &UpdateAgent) -> Decided {
    let s = match state {
        Some(s) if s.view.user_id == cmd.user_id => s,
        _ => return Err(not_found()),
    };
    if is_deactivated(s) {
        return Err(invalid("Agent is deactivated"));
    }
    if u.changes.is_empty() {
        return Err(invalid("Nothing to change"));
    }
    let mut next = s.view.clone();
    let mut key_changes = vec![];
    for (i, c) in u.changes.iter().enumerate() {
        if c.field == field::API_KEY {
            if c.to.as_ref().is_some_and(|k| k.len() > KEY_ID_CHARS_MAX) {
                return Err(invalid("Invalid api_key id"));
            }
            key_changes.push(FieldChange {
                field: c.field.clone(),
                from: None,
                to: c.to.clone(),
            });
            continue;
        }
        if !FIELDS.contains(&c.field.as_str()) {
            return Err(invalid(format!("{} cannot be changed", c.field)));
        }
        if u.changes[..i].iter().any(|d| d.field == c.field) {
            // (api_key changes were taken above: one per command is enough.)
            return Err(invalid(format!("{} is changed twice", c.field)));
        }
        set(&mut next, c)?;
    }
    if next.status == agent_status::DEACTIVATED && s.view.status != agent_status::DEACTIVATED {
        let idle = s.view.balance.is_zero()
            && s.reserved.is_zero()
            && s.open_payments.is_empty()
            && s.savings.is_empty()
            && s.settling.is_empty();
        if !idle {
            return Err(invalid(
                "An agent can be deactivated only at zero balance, with no open payments, savings or on-chain transfers",
            ));
        }
    }
    let mut changes: Vec<FieldChange> = FIELDS
        .iter()
        .filter_map(|name| {
            let (from, to) = (text_of(&s.view, name), text_of(&next, name));
            (from != to).then(|| FieldChange {
                field: name.to_string(),
                from,
                to,
            })
        })
        .collect();
    changes.extend(key_changes);
    if changes.is_empty() {
        return agent_answer(vec![], s.view.clone());
    }
    s.view = next;
    let v = &s.view;
    let event = EventPayload::AgentUpdated(AgentUpdated {
        changes,
        actor: u.actor.clone(),
        reason: u.reason.clone(),
        description: v.description.clone(),
        daily_limit: v.rules.daily_limit,
        transaction_limit: v.rules.transaction_limit,
        require_approval_for_all: v.rules.require_approval_for_all,
        require_approval_above_amount: v.rules.require_approval_above_amount,
        tags: v.tags.clone(),
        status: v.status.clone(),
    });
    agent_answer(vec![event], s.view.clone())
}
