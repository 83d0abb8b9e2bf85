//! Crash tests against the real stack: a processor killed mid-stream (and a
//! second one joining, so partitions are handed over), and the broker killed
//! with `kill -9`; after restarts nothing acknowledged is lost or doubled.

mod common;

use std::time::Duration;

use common::{audit, deposit_load, Deployment};
use rust_decimal::Decimal;
use serde_json::json;

const AGENTS: usize = 8;
const DEPOSITS: usize = 1_000;

/// Signs up, creates [`AGENTS`] agents with 1 USDC each, sends [`DEPOSITS`]
/// deposits while `chaos` runs, then audits everything acknowledged. Returns
/// how many requests the chaos disturbed (retried or held up).
async fn load_during(d: &Deployment, chaos: impl std::future::Future<Output = ()>) -> usize {
    let (user, key) = d.sign_up("crash").await;
    let mut agents = vec![];
    for _ in 0..AGENTS {
        agents.push(d.create_agent(&user, &key, json!({"balance": 1})).await);
    }
    let load = deposit_load(d, &user, &key, &agents, DEPOSITS, 16);
    let ((acked, disturbed), ()) = tokio::join!(load, chaos);
    audit(d, &key, &acked, DEPOSITS, Decimal::ONE).await;
    disturbed
}

#[tokio::test(flavor = "multi_thread")]
async fn processor_killed_mid_stream_loses_and_duplicates_nothing() {
    let d = Deployment::new("proccrash").await;
    d.start_split().await;
    let chaos = async {
        for round in 0..3 {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            d.kill("processor");
            tokio::time::sleep(Duration::from_millis(300)).await;
            d.start("processor", &["processor"]);
            if round >= 1 {
                // A second instance with the same index (a zombie's
                // successor): both apply until the older one steps down.
                d.start("processor", &["processor"]);
            }
        }
    };
    let disturbed = load_during(&d, chaos).await;
    assert!(
        disturbed > 0,
        "no request was disturbed: the crashes missed the load"
    );
    eprintln!("{disturbed} requests retried or held up across the crashes");
}

/// A broker of this test's own (port, SQLite file), so killing it
/// disturbs no other test.
struct Broker {
    dir: std::path::PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl Broker {
    fn start(dir: std::path::PathBuf, port: u16) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let mut b = Broker {
            dir,
            port,
            child: None,
        };
        b.restart();
        b
    }

    fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .unwrap();
        let child =
            std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local/broker"))
                .arg(self.dir.join("data"))
                .arg(self.port.to_string())
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("deploy/local/broker (deploy/local/up installs the broker)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the broker did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_killed_and_restarted_loses_and_duplicates_nothing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::path::PathBuf::from(common::log_dir()).join(format!("broker-{port}"));
    let _ = std::fs::remove_dir_all(&dir);
    let broker = std::sync::Mutex::new(Broker::start(dir, port));
    let d = Deployment::with_bootstrap("brokercrash", format!("127.0.0.1:{port}")).await;
    d.start_dev().await;
    let chaos = async {
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            broker.lock().unwrap().kill9();
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            broker.lock().unwrap().restart();
        }
    };
    let disturbed = load_during(&d, chaos).await;
    assert!(
        disturbed > 0,
        "no request was disturbed: the crashes missed the load"
    );
    eprintln!("{disturbed} requests retried or held up across the crashes");
}

#[tokio::test(flavor = "multi_thread")]
async fn group_mode_hands_partitions_over_when_an_instance_leaves() {
    let d = Deployment::new("grouphandover").await;
    d.run(&["topics"]);
    d.run(&["migrate"]);
    let group = [("AGENTBANK_PROCESSOR_ASSIGNMENT", "group")];
    // One member at a time, as a rolling deploy does: Tansu 0.6 can leave
    // partitions unassigned when two members join at the same moment.
    d.start_with_env("processor-a", &["processor"], &group);
    common::wait_for_log(&d, "processor", "partition restored", 4).await;
    d.start_with_env("processor-b", &["processor"], &group);
    common::wait_for_log(&d, "processor", "partition revoked", 1).await;
    d.start("sink", &["sink"]);
    d.start("gateway", &["gateway"]);
    d.wait_healthy().await;
    let handover = async {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        // A graceful stop: finish the batch, flush markers, leave the group.
        tokio::task::block_in_place(|| d.terminate("processor-a"));
    };
    load_during(&d, handover).await;
    let log =
        std::fs::read_to_string(format!("{}/{}-processor.log", common::log_dir(), d.name)).unwrap();
    assert!(log.contains("partition revoked"), "no rebalance happened");
}

/// Cross-agent payments while the processor is killed three times: every
/// acknowledged payment is credited exactly once, the ledger balances, and
/// each agent's balance in Postgres equals the processor's own (read back
/// through a deposit's answer, which comes from processor state).
#[tokio::test(flavor = "multi_thread")]
async fn processor_killed_during_payments_applies_each_exactly_once() {
    use futures::StreamExt;
    use std::collections::HashMap;
    use std::time::Instant;
    const PAYMENTS: usize = 400;
    let d = Deployment::new("paycrash").await;
    d.start_split().await;
    let (user, key) = d.sign_up("payer").await;
    let mut agents = vec![];
    for _ in 0..AGENTS {
        agents.push(d.create_agent(&user, &key, json!({"balance": 1000})).await);
    }
    let disturbed = std::sync::atomic::AtomicUsize::new(0);
    let load = futures::stream::iter(0..PAYMENTS)
        .map(|i| {
            let from = agents[i % AGENTS].clone();
            let to = agents[(i * 3 + 1) % AGENTS].clone();
            let to = if to == from { agents[(i + 1) % AGENTS].clone() } else { to };
            let amount = Decimal::new((i as i64 * 7_919) % 999_999 + 1, 6);
            let (d, key, disturbed) = (&d, &key, &disturbed);
            async move {
                let body = json!({"senderagentid": from, "receiveragentid": to, "name": format!("p{i}"),
                    "type": "INTERNAL", "paymentdetails": {"amount": amount.to_string(), "currency": "USDC"}});
                let started = Instant::now();
                loop {
                    let r = d.client.post(d.url("/payments/register")).header("x-api-key", key)
                        .header("Idempotency-Key", format!("pay-{i}")).json(&body).send().await;
                    if let Ok(r) = r {
                        if r.status() == 200 {
                            let v: serde_json::Value = r.json().await.unwrap();
                            if started.elapsed() > common::DISTURBED_AFTER {
                                disturbed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            return (v["id"].as_str().unwrap().to_string(), from, to, amount);
                        }
                        assert!(r.status() == 503 || r.status() == 502, "payment {i}: {}", r.status());
                    }
                    disturbed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    assert!(started.elapsed() < Duration::from_secs(180), "payment {i} never acknowledged");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>();
    let chaos = async {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(1_200)).await;
            d.kill("processor");
            tokio::time::sleep(Duration::from_millis(300)).await;
            d.start("processor", &["processor"]);
        }
    };
    let (acked, ()) = tokio::join!(load, chaos);
    assert!(disturbed.into_inner() > 0, "the crashes missed the load");

    let mut expected: HashMap<String, Decimal> = agents
        .iter()
        .map(|a| (a.clone(), Decimal::new(1000, 0)))
        .collect();
    let mut ids = std::collections::HashSet::new();
    for (id, from, to, amount) in &acked {
        assert!(
            ids.insert(id.clone()),
            "two acknowledgements named one payment"
        );
        *expected.get_mut(from).unwrap() -= *amount;
        *expected.get_mut(to).unwrap() += *amount;
    }
    // Every acknowledged payment finishes (the saga may still be running).
    let pool = d.pool().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (confirmed, credited): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM payments WHERE status = 'Confirmed'),
                    (SELECT count(*) FROM transactions WHERE kind = 'payment received')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if (confirmed as usize, credited as usize) == (PAYMENTS, PAYMENTS) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "confirmed {confirmed}, credited {credited} of {PAYMENTS}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (total, clearing): (Decimal, Decimal) = sqlx::query_as(
        "SELECT coalesce(sum(amount), 0), coalesce(sum(amount) FILTER (WHERE account LIKE 'settlement:%'), 0)
         FROM journal_postings",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        total.is_zero() && clearing.is_zero(),
        "ledger {total}, clearing {clearing}"
    );
    let tiny = Decimal::new(1, 6);
    for (agent, want) in &expected {
        let (status, got) = d.get(&format!("/agentsWith/{agent}"), &key).await;
        assert_eq!(status, 200);
        assert_eq!(
            got["balance"].as_str().unwrap().parse::<Decimal>().unwrap(),
            *want,
            "{agent} in Postgres"
        );
        let (status, dep) = d
            .post(
                "/agents/deposit",
                Some(&key),
                json!({"userid": user, "agentid": agent, "amount": "0.000001"}),
            )
            .await;
        assert_eq!(status, 200);
        let processor: Decimal = dep["updatedBalance"].as_str().unwrap().parse().unwrap();
        assert_eq!(processor, *want + tiny, "{agent} in the processor");
    }
}
