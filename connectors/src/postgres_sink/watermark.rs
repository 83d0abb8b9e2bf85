//! Read-your-writes for the gateway: tracks how far the sink has written each
//! events partition (from its `NOTIFY`s, with a periodic read of
//! `sink_offsets` in case a notification is missed) and lets a request wait
//! until the sink has passed the offsets its write produced.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;

use super::NOTIFY_CHANNEL;

/// How often the table is re-read even without notifications.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The sink's next offset per events partition, as last seen.
#[derive(Clone)]
pub struct Watermarks {
    rx: watch::Receiver<Arc<HashMap<i32, i64>>>,
}

impl Watermarks {
    /// Starts following the sink for `topic`.
    pub async fn follow(pool: PgPool, topic: String) -> Result<Self, crate::ConnectorError> {
        let (tx, rx) = watch::channel(Arc::new(HashMap::new()));
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        refresh(&pool, &topic, &tx).await?;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            loop {
                tokio::select! {
                    n = listener.recv() => match n {
                        Ok(n) => apply_notification(&topic, n.payload(), &tx),
                        Err(e) => {
                            tracing::warn!(error = %e, "sink notifications interrupted; polling");
                            tokio::time::sleep(POLL_INTERVAL).await;
                        }
                    },
                    _ = tick.tick() => {
                        if let Err(e) = refresh(&pool, &topic, &tx).await {
                            tracing::warn!(error = %e, "reading sink offsets failed");
                        }
                    }
                }
                if tx.is_closed() {
                    break;
                }
            }
        });
        Ok(Watermarks { rx })
    }

    /// Waits until the sink has written every (partition, offset) in `positions`.
    /// Returns false on timeout.
    pub async fn wait_for(&self, positions: &[(i32, i64)], timeout: Duration) -> bool {
        let mut rx = self.rx.clone();
        let passed = |m: &HashMap<i32, i64>| {
            positions
                .iter()
                .all(|(p, o)| m.get(p).is_some_and(|next| next > o))
        };
        tokio::time::timeout(timeout, rx.wait_for(|m| passed(m)))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

fn merge(tx: &watch::Sender<Arc<HashMap<i32, i64>>>, updates: &[(i32, i64)]) {
    tx.send_if_modified(|m| {
        let mut changed = false;
        let map = Arc::make_mut(m);
        for (p, o) in updates {
            let slot = map.entry(*p).or_insert(-1);
            if *o > *slot {
                *slot = *o;
                changed = true;
            }
        }
        changed
    });
}

fn apply_notification(topic: &str, payload: &str, tx: &watch::Sender<Arc<HashMap<i32, i64>>>) {
    // Payload: <topic>:<partition>:<next_offset>; the topic may contain ':'? No:
    // Kafka topic names are [a-zA-Z0-9._-], so split from the right.
    let mut parts = payload.rsplitn(3, ':');
    let (Some(o), Some(p), Some(t)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    if t != topic {
        return;
    }
    if let (Ok(p), Ok(o)) = (p.parse(), o.parse()) {
        merge(tx, &[(p, o)]);
    }
}

async fn refresh(
    pool: &PgPool,
    topic: &str,
    tx: &watch::Sender<Arc<HashMap<i32, i64>>>,
) -> Result<(), sqlx::Error> {
    let rows: Vec<(i32, i64)> =
        sqlx::query_as("SELECT partition, next_offset FROM sink_offsets WHERE topic = $1")
            .bind(topic)
            .fetch_all(pool)
            .await?;
    merge(tx, &rows);
    Ok(())
}
