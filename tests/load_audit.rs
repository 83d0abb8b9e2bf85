//! The load-test scenarios in short, as correctness tests: they assert the
//! audit (nothing lost, nothing doubled, the ledger balanced), never a timing.
//!
//! - A mixed workload (sign-ups, agents, deposits, instant and approval
//!   payments, reads) through agentbank and through the plain-Postgres
//!   baseline, both audited.
//! - Fault injection: one `kill -9` of every role — processor, sink,
//!   gateway, broker, Postgres — on a private stack under load, then the
//!   audit with exact expected balances.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Deployment;
use load_tests::chaos::{self, Role};
use load_tests::client::Api;
use load_tests::run::{run, Pacing, Plan};

/// Runs the mixed workload for a few seconds against `url`, then audits
/// the database behind it.
async fn mixed_run_audited(name: &str, url: &str, database_url: &str) {
    let api = Api::new(url);
    let tenant = Arc::new(api.tenant(8, 4, "1000").await.expect("tenant"));
    let plan = Plan {
        name: name.into(),
        // Every kind equally often, so a short, slow run still has each.
        mix: "signup=1,agent=1,deposit=1,payment=1,approval=1,read=1"
            .parse()
            .unwrap(),
        pacing: Pacing::Closed(8),
        warmup: Duration::from_millis(500),
        duration: Duration::from_secs(3),
        progress: false,
    };
    let outcome = run(&api, tenant, &plan).await;
    outcome.report.print();
    assert!(outcome.report.ok > 0, "{name}: nothing succeeded");
    assert!(
        outcome.report.errors.is_empty(),
        "{name}: errors {:?}",
        outcome.report.errors
    );
    for op in ["signup", "agent", "deposit", "payment", "approval", "read"] {
        assert!(outcome.report.ops.contains_key(op), "{name}: no {op} ran");
    }
    let pool = sqlx::PgPool::connect(database_url).await.unwrap();
    let audit = load_tests::audit::run(&pool, &outcome.payments)
        .await
        .unwrap();
    audit.print(name);
    assert!(audit.passed(), "{name}: {audit:?}");
    assert!(audit.payments_acknowledged > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_workload_on_agentbank_and_baseline_passes_the_audit() {
    let d = Deployment::new("loadmix").await;
    // The tenant funds its agents' balances in one test funding.
    d.set_env(&[("AGENTBANK_WALLET_TEST_FUNDING_MAX", "1000000000")]);
    d.start_dev().await;
    mixed_run_audited("agentbank", &d.url(""), &d.database_url).await;

    // The baseline in-process, on a database of its own.
    let b = Deployment::new("loadbase").await;
    let pool = b.pool().await;
    connectors::db::migrate(&pool).await.unwrap();
    load_tests::baseline::prepare(&pool).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let baseline = load_tests::baseline::router(pool);
    tokio::spawn(async move { axum::serve(listener, baseline).await });
    mixed_run_audited("baseline", &format!("http://{addr}"), &b.database_url).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_role_killed_once_under_load_loses_and_doubles_nothing() {
    let dir = std::path::PathBuf::from(common::log_dir()).join(format!(
        "chaos-{}",
        uuid::Uuid::new_v4().simple().to_string().get(..8).unwrap()
    ));
    let ms = Duration::from_millis;
    let report = chaos::run(chaos::Config {
        agentbank_bin: env!("CARGO_BIN_EXE_agentbank").into(),
        dir,
        kills: Role::ALL.len(),
        roles: Role::ALL.to_vec(),
        interval: (ms(800), ms(1_500)),
        downtime: (ms(200), ms(800)),
        concurrency: 8,
        agents: 6,
        seed: 20261123,
    })
    .await
    .expect("chaos run");
    report.print();
    assert_eq!(report.kills.values().sum::<usize>(), Role::ALL.len());
    assert!(report.deposits_acknowledged > 0 && report.payments_acknowledged > 0);
    assert!(report.passed(), "{report:?}");
}
