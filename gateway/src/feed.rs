//! The live event feed behind WebSocket `/v1/events`: one follower per
//! gateway reads new rows of the read model's `events` table (woken by the
//! sink's `NOTIFY`, polling every second as a fallback) and broadcasts them;
//! each connection filters by its user and channels. Positions are the
//! table's `seq`, which only grows, so a client resuming after position n
//! reads `seq > n` from the table and then continues live without a gap.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::broadcast;
use uuid::Uuid;

use connectors::read_model::events::{self, EventRow};

use connectors::postgres_sink::CommitFollower;

/// Events buffered per connection before a slow client is dropped.
pub const FEED_BUFFER: usize = 4_096;
/// Rows read per query (catch-up and live).
pub const FEED_PAGE: i64 = 1_000;

/// One event as clients get it.
#[derive(Debug, Clone)]
pub struct FeedEvent {
    pub seq: i64,
    pub user_id: Uuid,
    pub channel: &'static str,
    /// `{type, id, position, channel, timestamp, data}`.
    pub message: Arc<str>,
}

/// The channel an event type belongs to.
pub fn channel_of(event_type: &str) -> &'static str {
    match event_type.split('.').next().unwrap_or_default() {
        "payment" => "payments",
        "savings" => "savings",
        "opportunity" => "opportunities",
        "revenue" | "quote" => "revenue",
        "position" | "portfolio" => "portfolio",
        "system" => "alerts",
        "wallet" | "bonus" => "wallet",
        _ => "agents",
    }
}

/// Every channel a client may subscribe to.
pub const CHANNELS: [&str; 8] = [
    "payments",
    "wallet",
    "agents",
    "savings",
    "opportunities",
    "revenue",
    "alerts",
    "portfolio",
];

fn to_event(r: EventRow) -> Option<FeedEvent> {
    let envelope: Value = serde_json::from_str(r.envelope.as_deref()?).ok()?;
    let ty = envelope["type"].as_str()?.to_string();
    let channel = channel_of(&ty);
    let message = serde_json::json!({
        "type": ty,
        "id": envelope["id"],
        "position": r.seq,
        "channel": channel,
        "timestamp": envelope["created"],
        "data": envelope["data"],
    });
    Some(FeedEvent {
        seq: r.seq,
        user_id: r.user_id,
        channel,
        message: message.to_string().into(),
    })
}

/// Up to [`FEED_PAGE`] rows after `after` (for one user, or everyone),
/// oldest first, with the last position read (rows without an envelope,
/// written before the feed existed, are passed over).
pub async fn read_after(
    pool: &PgPool,
    user: Option<Uuid>,
    after: i64,
) -> Result<(i64, Vec<FeedEvent>), connectors::ConnectorError> {
    let rows = events::after(pool, user, after, FEED_PAGE).await?;
    let last = rows.last().map_or(after, |r| r.seq);
    Ok((last, rows.into_iter().filter_map(to_event).collect()))
}

pub struct Feed {
    pub pool: PgPool,
    pub sender: broadcast::Sender<FeedEvent>,
    /// The highest position broadcast so far.
    pub position: AtomicI64,
}

/// The table's last position.
async fn end_of(pool: &PgPool) -> Result<i64, connectors::ConnectorError> {
    events::end(pool).await
}

impl Feed {
    /// Starts following from the current end of the table.
    pub async fn start(pool: PgPool) -> Result<Arc<Feed>, connectors::ConnectorError> {
        let end = end_of(&pool).await?;
        let (sender, _) = broadcast::channel(FEED_BUFFER);
        let feed = Arc::new(Feed {
            pool,
            sender,
            position: AtomicI64::new(end),
        });
        let follower = feed.clone();
        tokio::spawn(async move { follower.follow().await });
        Ok(feed)
    }

    async fn follow(self: Arc<Self>) {
        let mut commits = CommitFollower::new(&self.pool).await;
        loop {
            // Wake on the sink's commit, or after a second at the latest.
            commits.wait(Duration::from_secs(1)).await;
            if self.sender.receiver_count() == 0 {
                // Nobody connected: move the live position to the table's
                // end without reading rows (that was 7% of agentbank's CPU
                // under load in `dev`). The end is read *before* the check, so a client
                // connecting meanwhile gets every event committed after it
                // subscribed (those are above the end), and a resuming client
                // catches up from the table anyway.
                let Ok(end) = end_of(&self.pool).await else {
                    continue;
                };
                if self.sender.receiver_count() == 0 {
                    self.position.fetch_max(end, Ordering::AcqRel);
                    continue;
                }
            }
            loop {
                let after = self.position.load(Ordering::Acquire);
                let Ok((last, batch)) = read_after(&self.pool, None, after).await else {
                    break;
                };
                if last == after {
                    break;
                }
                for e in batch {
                    let _ = self.sender.send(e);
                }
                self.position.store(last, Ordering::Release);
            }
        }
    }
}
