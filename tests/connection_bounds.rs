//! Bounds a hostile client meets on a real gateway: headers trickled one
//! byte at a time are cut off, a request whose body never finishes answers
//! 503 in its API's format at the request timeout, a credential beyond its
//! in-flight cap gets 429 while others are served, the connection beyond
//! the gateway's cap gets a 503 and is closed — and each limit shows in
//! `/metrics`.

mod common;

use std::time::{Duration, Instant};

use common::Deployment;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads what the server sends until it closes or `wait` passes.
async fn read_all(s: &mut TcpStream, wait: Duration) -> String {
    let mut out = vec![];
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match tokio::time::timeout(deadline - Instant::now(), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A POST whose body is promised but sent a byte at a time.
async fn slow_post(addr: &str, key: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/revenue/events HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n\
         content-type: application/json\r\ncontent-length: 500\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_bounds_what_one_client_holds() {
    let d = Deployment::new("bounds").await;
    d.set_env(&[
        ("AGENTBANK_CONNECTIONS_MAX", "12"),
        ("AGENTBANK_HEADER_READ_TIMEOUT_MS", "700"),
        ("AGENTBANK_REQUEST_TIMEOUT_MS", "1500"),
        ("AGENTBANK_IN_FLIGHT_PER_KEY", "2"),
        ("AGENTBANK_DEFAULT_TIER", "enterprise"),
    ]);
    d.start_dev().await;
    let (_, key) = d.sign_up("bo").await;
    let addr = d.http.clone();

    // Headers a byte at a time: cut off near the header timeout.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if s.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut probe = [0u8; 1024];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickling client was never cut off");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut off after {:?}",
        started.elapsed()
    );

    // A body that never finishes: 503 in the revenue API's envelope.
    let mut s = slow_post(&addr, &key).await;
    let started = Instant::now();
    let answer = read_all(&mut s, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("\"code\":\"SERVICE_UNAVAILABLE\""),
        "{answer}"
    );
    assert!(started.elapsed() >= Duration::from_millis(1_400));

    // Two requests in flight for the key: a third is refused, others served.
    let (mut a, mut b) = (slow_post(&addr, &key).await, slow_post(&addr, &key).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s3, e) = d.get("/v1/revenue/transactions", &key).await;
    assert_eq!(s3, 429, "{e}");
    assert_eq!(e["error"]["code"], "RATE_LIMIT_EXCEEDED");
    let (_, other) = d.sign_up("cy").await;
    assert_eq!(d.get("/v1/revenue/transactions", &other).await.0, 200);
    read_all(&mut a, Duration::from_secs(3)).await;
    read_all(&mut b, Duration::from_secs(3)).await;
    assert_eq!(d.get("/v1/revenue/transactions", &key).await.0, 200);

    // Connections beyond the cap: a 503 and closed. All opened at once
    // (idle ones may be closed by the header timeout meanwhile).
    let mut sockets = vec![];
    for _ in 0..24 {
        sockets.push(TcpStream::connect(&addr).await.unwrap());
    }
    let mut held = vec![];
    let mut refused = vec![];
    for mut s in sockets {
        let mut first = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut first)).await {
            Ok(Ok(n)) if n > 0 => refused.push(String::from_utf8_lossy(&first[..n]).into_owned()),
            _ => held.push(s),
        }
    }
    assert!(
        !refused.is_empty(),
        "no connection beyond the cap was refused"
    );
    assert!(refused[0].starts_with("HTTP/1.1 503"), "{}", refused[0]);
    assert!(
        refused[0].contains("Too many connections"),
        "{}",
        refused[0]
    );
    assert!(held.len() <= 12, "{} connections held", held.len());
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let metrics = d
        .client
        .get(d.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for limit in ["connections", "request_timeout", "in_flight_per_key"] {
        assert!(
            metrics.contains(&format!(
                "agentbank_gateway_limit_hits_total{{limit=\"{limit}\"}}"
            )),
            "{limit} not in /metrics"
        );
    }
}
