//! The agent bank's HTTP handlers (the Mage API), one module per resource.
//! Errors answer `{"error": "..."}`.

pub mod agents;
pub mod history;
pub mod investment;
pub mod lifecycle;
pub mod payments;
pub mod reports;
pub mod savings;
pub mod users;

use uuid::Uuid;

use crate::error::ApiError;
use crate::AppState;

/// The owner of an agent, from the read model (cached: an agent's owner
/// never changes).
pub(crate) async fn agent_owner(state: &AppState, agent: Uuid) -> Result<Option<Uuid>, ApiError> {
    if let Some(owner) = state.caches.owners.get(agent) {
        return Ok(Some(owner));
    }
    let owner = connectors::read_model::agents::owner(&state.pool, agent).await?;
    if let Some(owner) = owner {
        state.caches.owners.put(agent, owner);
    }
    Ok(owner)
}
