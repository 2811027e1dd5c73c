//! Connecting to the broker and the streams wasmflow uses.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::wire;

/// How to reach the broker. Credentials come from a creds file, or from
/// `NATS_TOKEN`, or `NATS_USER` and `NATS_PASSWORD`; `tls://` URLs use TLS.
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    /// `nats://HOST:PORT` or `tls://HOST:PORT`.
    pub url: String,
    /// A `.creds` file (JWT and NKey seed).
    pub creds: Option<PathBuf>,
    /// Client name the server shows.
    pub name: String,
}

/// Splits `nats://HOST:PORT/POOL` into the URL and the pool (`default`).
pub fn split_pool(url: &str) -> Result<(String, String), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not a NATS URL (nats://HOST:PORT[/POOL])"))?;
    if !matches!(scheme, "nats" | "tls") {
        return Err(format!(
            "`{url}`: the scheme must be nats:// or tls://, not {scheme}://"
        ));
    }
    let (host, pool) = match rest.split_once('/') {
        Some((host, pool)) if !pool.is_empty() => (host, pool.trim_end_matches('/')),
        Some((host, _)) => (host, "default"),
        None => (rest, "default"),
    };
    wire::check_token("pool", pool)?;
    Ok((format!("{scheme}://{host}"), pool.to_string()))
}

/// Connects, with the credentials the options and environment give.
pub async fn connect(options: &BrokerOptions) -> Result<async_nats::Client, String> {
    connect_watching(options, None).await
}

/// [`connect`], and sends the connection's events (disconnected,
/// connected again) to `events`: a broker that came back may have lost
/// its store, which the caller then reconciles.
pub async fn connect_watching(
    options: &BrokerOptions,
    events: Option<tokio::sync::mpsc::UnboundedSender<async_nats::Event>>,
) -> Result<async_nats::Client, String> {
    let mut connect = async_nats::ConnectOptions::new()
        .name(&options.name)
        .connection_timeout(Duration::from_secs(5))
        // Back soon after a broker restarts; a cut link shows within 20 s.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64).saturating_mul(250).min(4000))
        })
        .ping_interval(Duration::from_secs(10))
        .retry_on_initial_connect();
    if let Some(creds) = &options.creds {
        connect = connect
            .credentials_file(creds)
            .await
            .map_err(|e| format!("cannot read the NATS credentials {}: {e}", creds.display()))?;
    } else if let Ok(token) = std::env::var("NATS_TOKEN") {
        connect = connect.token(token);
    } else if let (Ok(user), Ok(password)) =
        (std::env::var("NATS_USER"), std::env::var("NATS_PASSWORD"))
    {
        connect = connect.user_and_password(user, password);
    }
    if options.url.starts_with("tls://") {
        connect = connect.require_tls(true);
    }
    if let Some(events) = events {
        connect = connect.event_callback(move |event| {
            let events = events.clone();
            async move {
                let _ = events.send(event);
            }
        });
    }
    let client = tokio::time::timeout(Duration::from_secs(10), connect.connect(&options.url))
        .await
        .map_err(|_| format!("cannot reach the NATS server at {} within 10s", options.url))?
        .map_err(|e| format!("cannot connect to the NATS server at {}: {e}", options.url))?;
    Ok(client)
}

/// Waits until the connection is back after a loss (logged as `who`);
/// `None` once the connection is closed for good.
pub async fn next_return(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<async_nats::Event>,
    who: &str,
) -> Option<()> {
    let mut lost = false;
    while let Some(event) = events.recv().await {
        match event {
            async_nats::Event::Disconnected => {
                lost = true;
                tracing::warn!("{who}: lost the broker; reconnecting");
            }
            async_nats::Event::Connected if lost => {
                tracing::info!("{who}: the broker is back");
                return Some(());
            }
            _ => {}
        }
    }
    None
}

/// The work-queue stream (requests by pool) and the results stream (by
/// run), created when missing.
pub async fn ensure_streams(js: &jetstream::Context) -> Result<(), String> {
    make_streams(js).await.map_err(|e| {
        // The client connects in the background: a server that never
        // answered shows only as a timed-out request.
        if js.client().connection_state() == async_nats::connection::State::Connected {
            e
        } else {
            format!("cannot reach the NATS server (is it running, and is the URL right?): {e}")
        }
    })
}

async fn make_streams(js: &jetstream::Context) -> Result<(), String> {
    js.get_or_create_stream(stream::Config {
        name: wire::WORK_STREAM.into(),
        subjects: vec!["wasmflow.work.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        max_message_size: wire::MAX_MESSAGE as i32,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot create the {} stream: {e}", wire::WORK_STREAM))?;
    js.get_or_create_stream(stream::Config {
        name: wire::RESULT_STREAM.into(),
        subjects: vec!["wasmflow.result.>".into()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        max_message_size: wire::MAX_MESSAGE as i32,
        max_age: Duration::from_secs(7 * 24 * 3600),
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot create the {} stream: {e}", wire::RESULT_STREAM))?;
    // Workers' heartbeats, the last of each: `wasmflow worker ls`. Memory
    // is enough: a broker that lost them has them again within a beat.
    js.get_or_create_stream(stream::Config {
        name: wire::WORKER_STREAM.into(),
        subjects: vec!["wasmflow.worker.>".into()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::Memory,
        max_messages_per_subject: 1,
        max_age: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot create the {} stream: {e}", wire::WORKER_STREAM))?;
    Ok(())
}

/// The object store results over the message limit go through.
pub async fn blob_store(
    js: &jetstream::Context,
) -> Result<jetstream::object_store::ObjectStore, String> {
    if let Ok(store) = js.get_object_store(wire::BLOB_BUCKET).await {
        return Ok(store);
    }
    js.create_object_store(jetstream::object_store::Config {
        bucket: wire::BLOB_BUCKET.into(),
        description: Some("wasmflow: agent results over the message limit".into()),
        max_age: Duration::from_secs(7 * 24 * 3600),
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot create the {} object store: {e}", wire::BLOB_BUCKET))
}

/// Stores `bytes` as the object `blob` describes.
pub async fn put_blob(
    js: &jetstream::Context,
    blob: &wire::Blob,
    bytes: &[u8],
) -> Result<(), String> {
    blob_store(js)
        .await?
        .put(blob.name.as_str(), &mut &bytes[..])
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot put {} bytes in the object store: {e}", bytes.len()))
}

/// The object `blob` names, read whole (at most [`wire::MAX_BLOB`]) and
/// checked against its size and sha256; `what` names it in errors. Returns
/// the store too, to delete it when done.
pub async fn fetch_blob(
    js: &jetstream::Context,
    blob: &wire::Blob,
    what: &str,
) -> Result<(jetstream::object_store::ObjectStore, Vec<u8>), String> {
    if blob.size > wire::MAX_BLOB {
        return Err(format!(
            "{what} is {} bytes, over the {} taken from the object store",
            blob.size,
            wire::MAX_BLOB
        ));
    }
    let store = blob_store(js).await?;
    let mut object = store
        .get(&blob.name)
        .await
        .map_err(|e| format!("cannot fetch {what}: {e}"))?;
    let mut bytes = Vec::with_capacity(blob.size as usize);
    tokio::io::AsyncReadExt::read_to_end(
        &mut tokio::io::AsyncReadExt::take(&mut object, wire::MAX_BLOB + 1),
        &mut bytes,
    )
    .await
    .map_err(|e| format!("cannot read {what}: {e}"))?;
    blob.check(&bytes, what)?;
    Ok((store, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_pools() {
        assert_eq!(
            split_pool("nats://h:4222").unwrap(),
            ("nats://h:4222".into(), "default".into())
        );
        assert_eq!(
            split_pool("tls://h:4222/haiku-pool").unwrap(),
            ("tls://h:4222".into(), "haiku-pool".into())
        );
        assert!(split_pool("http://h").is_err());
        assert!(split_pool("nats://h/a.b").is_err());
    }
}
