//! The live workers a broker knows of, from their heartbeats
//! (`wasmflow worker ls`).

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;

use crate::broker::{self, BrokerOptions};
use crate::wire::{self, Heartbeat};

/// A worker as its last heartbeat shows it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// What it said.
    pub beat: Heartbeat,
    /// How long ago (milliseconds, by this machine's clock).
    pub age_ms: u64,
}

impl Seen {
    /// `running`, `draining` and `stopped` as it said; `lost` when it has
    /// not said anything for three heartbeats.
    pub fn state(&self) -> &str {
        if self.beat.state != "stopped" && self.age_ms > 3 * 1000 * wire::HEARTBEAT_SECS {
            "lost"
        } else {
            &self.beat.state
        }
    }
}

/// The last heartbeat of every worker (of `pool`, when given) in the last
/// hour, by pool then name.
pub async fn workers(options: &BrokerOptions, pool: Option<&str>) -> Result<Vec<Seen>, String> {
    if let Some(p) = pool {
        wire::check_token("pool", p)?;
    }
    let client = broker::connect(options).await?;
    let js = jetstream::new(client);
    broker::ensure_streams(&js).await?;
    let stream = js
        .get_stream(wire::WORKER_STREAM)
        .await
        .map_err(|e| format!("cannot open the {} stream: {e}", wire::WORKER_STREAM))?;
    let filter = match pool {
        Some(p) => format!("wasmflow.worker.{p}.*"),
        None => "wasmflow.worker.>".to_string(),
    };
    // One message per subject is kept: all of them are the last ones.
    let mut listing = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: filter,
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(10),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot read the workers' heartbeats: {e}"))?;
    let pending = listing
        .info()
        .await
        .map_err(|e| format!("cannot read the workers' heartbeats: {e}"))?
        .num_pending as usize;
    let mut seen = Vec::new();
    if pending > 0 {
        let mut messages = listing
            .batch()
            .max_messages(pending)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .map_err(|e| format!("cannot read the workers' heartbeats: {e}"))?;
        let now = wire::now_ms();
        while let Some(Ok(m)) = messages.next().await {
            if let Ok(beat) = serde_json::from_slice::<Heartbeat>(&m.payload) {
                seen.push(Seen {
                    age_ms: now.saturating_sub(beat.at_ms),
                    beat,
                });
            }
        }
    }
    seen.sort_by(|a, b| (&a.beat.pool, &a.beat.name).cmp(&(&b.beat.pool, &b.beat.name)));
    Ok(seen)
}
