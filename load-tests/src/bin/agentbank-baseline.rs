//! `agentbank-baseline`: the plain-Postgres ledger of
//! [`load_tests::baseline`] as a server, to run beside agentbank.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

/// The same allocator as agentbank's binary, so the comparison measures the
/// designs, not the allocators.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    #[arg(long, env = "BASELINE_HTTP_ADDR", default_value = "127.0.0.1:8090")]
    http_addr: SocketAddr,
    #[arg(
        long,
        env = "BASELINE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/agentbank_baseline"
    )]
    database_url: String,
    /// Connections in the pool (the 2-core box saturates well below 64).
    #[arg(long, default_value_t = 32)]
    pool: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(args.pool)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&args.database_url)
        .await
        .context("connecting to the baseline database")?;
    connectors::db::migrate(&pool).await?;
    load_tests::baseline::prepare(&pool).await?;
    let listener = tokio::net::TcpListener::bind(args.http_addr).await?;
    eprintln!("baseline listening on {}", args.http_addr);
    axum::serve(listener, load_tests::baseline::router(pool)).await?;
    Ok(())
}
