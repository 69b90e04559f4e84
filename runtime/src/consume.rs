//! The pull loop router and senders share: many messages in flight, bounded;
//! on shutdown, stop pulling, finish what was started, and hand back at once
//! what was fetched but not started, so other replicas take it without
//! waiting for the ack wait.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

/// How long a stopping process keeps handing back fetched messages.
const HAND_BACK_FOR: Duration = Duration::from_secs(2);

/// Consumes `consumer` with at most `concurrency` messages in `handle` at
/// once, until `cancel` fires and the messages in hand are finished.
pub async fn consume<F, Fut>(
    consumer: &jetstream::consumer::Consumer<jetstream::consumer::pull::Config>,
    concurrency: usize,
    cancel: &CancellationToken,
    what: &str,
    handle: F,
) where
    F: Fn(jetstream::Message) -> Fut,
    Fut: Future<Output = ()>,
{
    while !cancel.is_cancelled() {
        let mut messages = match consumer
            .stream()
            .max_messages_per_batch(concurrency)
            .messages()
            .await
        {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(error = %error, "Cannot pull {what}; retrying.");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        (&mut messages)
            .take_until(cancel.cancelled())
            .for_each_concurrent(concurrency, |message| async {
                match message {
                    Ok(message) => handle(message).await,
                    Err(error) => tracing::debug!(error = %error, "Pull interrupted."),
                }
            })
            .await;
        if cancel.is_cancelled() {
            hand_back(&mut messages, what).await;
        }
    }
}

async fn hand_back(messages: &mut jetstream::consumer::pull::Stream, what: &str) {
    let deadline = tokio::time::Instant::now() + HAND_BACK_FOR;
    let mut handed = 0usize;
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(
        deadline.min(tokio::time::Instant::now() + Duration::from_millis(100)),
        messages.next(),
    )
    .await
    {
        if message.ack_with(AckKind::Nak(None)).await.is_ok() {
            handed += 1;
        }
    }
    tracing::info!(
        handed,
        "Stopped pulling {what}; handed back what was not started."
    );
}
