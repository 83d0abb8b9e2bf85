//! The Postgres pool and the read model's migrations (`connectors/migrations`,
//! embedded at build time, applied with `agentbank migrate` or at start-up).

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::ConnectorError;

/// Connects with a bounded pool; fails fast when Postgres is unreachable.
pub async fn connect(database_url: &str, max_connections: u32) -> Result<PgPool, ConnectorError> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(database_url)
        .await?)
}

/// Applies pending migrations; safe to run concurrently and repeatedly.
pub async fn migrate(pool: &PgPool) -> Result<(), ConnectorError> {
    sqlx::migrate!("./migrations").run(pool).await?;
    Ok(())
}
