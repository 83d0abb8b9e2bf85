//! Opportunities as a keyed machine (key: the opportunity's id; scoped to
//! its tenant). `CreateOpportunity` scores the spec ([`scoring`]) and keeps
//! it `pending`; `ExecuteOpportunity` makes it `active` and hands an
//! `ExecutionRequest` to its vertical's agent (`agentbank.executions`, read
//! by the worker pools in `connectors::workers`), whose `CompleteOpportunity`
//! completes it with the execution's time by the log's record timestamps —
//! so the lifecycle `pending → active → completed` passes through the log
//! and replays identically. A completion is applied once: a second one (a
//! request worked twice after a worker restart) finds it completed. Every command is idempotent: a repeated create (same
//! command id) or execute answers the current record and changes nothing.

pub mod scoring;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use schemas::event::OpportunityChange;
use schemas::ids::{self, Kind};
use schemas::reply::{Outcome, RejectCode};
use schemas::revenue::opportunity::{status, Artifact, Execution, Opportunity};
use schemas::revenue::workers::ExecutionRequest;
use schemas::{Command, CommandPayload, Event, EventPayload};

use crate::runtime::machine::{Ids, Machine, Route, Step};

/// One opportunity's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpportunityState {
    pub opportunity: Opportunity,
    /// The create command's id: its retry answers, another id conflicts.
    pub created_by: Uuid,
}

/// The opportunities machine.
#[derive(Debug, Clone, Default)]
pub struct OpportunityMachine;

fn answer(o: &Opportunity) -> Option<Outcome> {
    Some(Outcome::Opportunity(Box::new(o.clone())))
}

fn event(
    command: &Command,
    ids: &Ids<'_>,
    o: &Opportunity,
    payload: fn(OpportunityChange) -> EventPayload,
) -> Event {
    Event {
        id: ids.id(0),
        agent_id: o.id,
        user_id: o.tenant_id,
        command_id: command.id,
        correlation_id: command.correlation_id.clone(),
        timestamp_ms: command.timestamp_ms,
        agent_version: o.version,
        payload: payload(OpportunityChange {
            opportunity: Box::new(o.clone()),
        }),
    }
}

const NOT_FOUND: &str = "Opportunity not found";

impl Machine for OpportunityMachine {
    type State = OpportunityState;

    fn route(&self, command: &Command) -> Route {
        Route::Key(command.agent_id)
    }

    fn apply(
        &self,
        state: &mut Option<OpportunityState>,
        command: &Command,
        ids: &Ids<'_>,
    ) -> Step {
        match &command.payload {
            CommandPayload::CreateOpportunity(c) => {
                if let Some(s) = state {
                    return if s.created_by == command.id
                        && s.opportunity.tenant_id == command.user_id
                    {
                        Step {
                            reply: answer(&s.opportunity),
                            ..Step::default()
                        }
                    } else {
                        Step::rejected(
                            RejectCode::Conflict,
                            "An opportunity with this id already exists",
                        )
                    };
                }
                let o = scoring::score(
                    &c.spec,
                    command.agent_id,
                    command.user_id,
                    command.timestamp_ms,
                );
                let step = Step {
                    events: vec![event(command, ids, &o, EventPayload::OpportunityCreated)],
                    reply: answer(&o),
                    ..Step::default()
                };
                *state = Some(OpportunityState {
                    opportunity: o,
                    created_by: command.id,
                });
                step
            }
            CommandPayload::ExecuteOpportunity(_) => {
                let Some(s) = state
                    .as_mut()
                    .filter(|s| s.opportunity.tenant_id == command.user_id)
                else {
                    return Step::rejected(RejectCode::NotFound, NOT_FOUND);
                };
                let o = &mut s.opportunity;
                if o.status != status::PENDING {
                    return Step {
                        reply: answer(o),
                        ..Step::default()
                    };
                }
                o.status = status::ACTIVE.into();
                o.updated_ms = command.timestamp_ms;
                o.version += 1;
                o.execution = Some(Execution {
                    started_ms: command.timestamp_ms,
                    completed_ms: None,
                    execution_time_ms: None,
                    result: None,
                    artifacts: vec![],
                });
                let work = ExecutionRequest {
                    opportunity_id: o.id,
                    tenant_id: o.tenant_id,
                    vertical: o.vertical.clone(),
                    started_ms: command.timestamp_ms,
                };
                Step {
                    events: vec![event(command, ids, o, EventPayload::OpportunityActivated)],
                    executions: vec![work],
                    reply: answer(o),
                    ..Step::default()
                }
            }
            CommandPayload::CompleteOpportunity(c) => {
                let Some(s) = state.as_mut() else {
                    return Step::default();
                };
                let o = &mut s.opportunity;
                let started = o.execution.as_ref().map(|x| x.started_ms);
                if o.status != status::ACTIVE || started != Some(c.started_ms) {
                    return Step::default(); // a replayed step: already completed
                }
                // The completion's own record time: when the worker produced it.
                let done_ms = ids
                    .record_ms()
                    .unwrap_or(command.timestamp_ms)
                    .max(c.started_ms);
                o.status = status::COMPLETED.into();
                o.updated_ms = done_ms;
                o.version += 1;
                o.execution = Some(Execution {
                    started_ms: c.started_ms,
                    completed_ms: Some(done_ms),
                    execution_time_ms: Some(done_ms - c.started_ms),
                    result: Some("success".into()),
                    artifacts: vec![Artifact {
                        kind: "execution_plan".into(),
                        url: format!("/v1/opportunities/{}", ids::short(Kind::Opportunity, o.id)),
                    }],
                });
                Step {
                    events: vec![event(command, ids, o, EventPayload::OpportunityExecuted)],
                    ..Step::default()
                }
            }
            _ => Step::rejected(RejectCode::Invalid, "not a command for opportunities"),
        }
    }

    fn observe(&self, event: &Event) {
        let kind = match event.payload {
            EventPayload::OpportunityCreated(_) => "created",
            EventPayload::OpportunityActivated(_) => "activated",
            EventPayload::OpportunityExecuted(_) => "executed",
            _ => return,
        };
        metrics::counter!("agentbank_opportunities_total", "event" => kind).increment(1);
    }
}
