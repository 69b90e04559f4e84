//! Tending the edges HERALD_EVENTS sources (`--edge`): noticing when one is
//! cut off and when it comes back, restarting its source at once when it
//! does, and trimming from the edge's own HERALD_EVENTS what the hub has
//! stored.
//!
//! nats-server retries a source that lost its edge with a growing backoff
//! (10 s more after each failure, up to 2 minutes), so an edge cut off for
//! a while would wait up to 2 minutes after its link came back before its
//! backlog moved. Removing the source and adding it again starts it at once;
//! the server then resumes it after the last message it stored from that
//! edge (it reads the origin sequence each sourced message carries), so
//! nothing is sourced twice.

use std::time::Duration;

use async_nats::jetstream;
use herald_proto::names;
use herald_runtime::edges::{Edge, EventSources};
use herald_runtime::metrics::EdgeLabels;
use herald_runtime::{Metrics, Nats};
use tokio_util::sync::CancellationToken;

/// How often each edge is looked at.
const TEND_EVERY: Duration = Duration::from_secs(2);

/// How long an edge's JetStream may take to answer before it counts as cut off.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The header a sourced message carries: `<source> <origin sequence> ...`.
const STREAM_SOURCE_HEADER: &str = "Nats-Stream-Source";

/// Whether an edge answered the last time it was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Unknown,
    Up,
    Down,
}

/// Tends `edges` until `cancel` fires.
pub async fn tend(nats: Nats, edges: Vec<Edge>, metrics: Metrics, cancel: CancellationToken) {
    let mut links = vec![Link::Unknown; edges.len()];
    // Per edge, the origin sequence below which its stream was last trimmed.
    let mut trimmed = vec![0_u64; edges.len()];
    // Set when a restart removed a source and could not add it back: the
    // full list is set again on every look until it is.
    let mut unsettled = false;
    loop {
        if unsettled {
            match nats.ensure_events_stream(EventSources::Own(&edges)).await {
                Ok(()) => unsettled = false,
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "Cannot set the sources of HERALD_EVENTS; trying again.");
                }
            }
        }
        let answers =
            futures::future::join_all(edges.iter().map(|edge| answers(&nats, edge))).await;
        for (((edge, link), answer), trimmed) in
            edges.iter().zip(&mut links).zip(answers).zip(&mut trimmed)
        {
            metrics
                .edge_linked
                .get_or_create(&EdgeLabels {
                    edge: edge.cluster.clone(),
                })
                .set(i64::from(answer.is_ok()));
            match (answer, *link) {
                (Ok(()), Link::Up) => {}
                (Ok(()), previous) => {
                    tracing::info!(edge = %edge, "An edge's JetStream answers; sourcing its events.");
                    // A source that failed while the edge was away waits
                    // out the server's backoff; one never seen failing
                    // (the first look) is left alone.
                    if previous == Link::Down
                        && let Err(error) = restart_source(&nats, &edges, edge).await
                    {
                        tracing::warn!(edge = %edge, error = %format!("{error:#}"), "Cannot restart an edge's source; setting the sources again.");
                        unsettled = true;
                    }
                    *link = Link::Up;
                }
                (Err(error), Link::Down) => {
                    tracing::debug!(edge = %edge, error = %error, "An edge is still cut off.");
                }
                (Err(error), _) => {
                    tracing::warn!(
                        edge = %edge,
                        error = %error,
                        "An edge's JetStream does not answer; its events wait at the edge until its \
                         leaf node is linked to this hub again (leafnodes {{ listen }} here, \
                         leafnodes {{ remotes }} and jetstream {{ domain }} at the edge)."
                    );
                    *link = Link::Down;
                }
            }
            if *link == Link::Up {
                match trim_edge(&nats, edge, *trimmed).await {
                    Ok(below) => *trimmed = below,
                    Err(error) => {
                        tracing::debug!(edge = %edge, error = %format!("{error:#}"), "Cannot trim an edge's stream now.");
                    }
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(TEND_EVERY) => {}
        }
    }
}

/// A JetStream context on the edge's domain, through the hub.
fn edge_context(nats: &Nats, edge: &Edge) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(ANSWER_WITHIN)
        .domain(&edge.domain)
        .build(nats.client.clone())
}

/// Whether the edge's JetStream answers through the hub now.
async fn answers(nats: &Nats, edge: &Edge) -> Result<(), jetstream::context::AccountError> {
    edge_context(nats, edge).query_account().await.map(|_| ())
}

/// Removes the edge's source from HERALD_EVENTS and adds it back, which
/// starts it at once where it stopped.
async fn restart_source(nats: &Nats, edges: &[Edge], edge: &Edge) -> anyhow::Result<()> {
    let others: Vec<Edge> = edges.iter().filter(|e| *e != edge).cloned().collect();
    nats.ensure_events_stream(EventSources::Own(&others))
        .await?;
    nats.ensure_events_stream(EventSources::Own(edges)).await?;
    tracing::debug!(edge = %edge, "Restarted an edge's source.");
    Ok(())
}

/// Purges from the edge's HERALD_EVENTS every event the hub has stored:
/// those up to the origin sequence of the newest message the hub sourced
/// from it. Sources store in order, so all before it are stored too.
///
/// Done as soon as the hub has stored more (on every look, when the edge
/// answers). The server resumes a restarted source after the last message
/// the hub holds from it; should the hub's own trimming (routed events,
/// under budget pressure) take that message while the edge still holds
/// events before it, those would be sourced again, and stored again once
/// past the duplicate window. Trimming the edge at once keeps that window
/// to one look.
///
/// Returns the sequence the edge's stream is now trimmed below; the edge
/// is asked only when that is not `trimmed` already.
async fn trim_edge(nats: &Nats, edge: &Edge, trimmed: u64) -> anyhow::Result<u64> {
    let hub = nats
        .jetstream
        .get_stream_no_info(names::EVENTS_STREAM)
        .await?;
    let newest = match hub
        .get_last_raw_message_by_subject(&names::event_subject(&edge.cluster))
        .await
    {
        Ok(message) => message,
        // Nothing sourced yet, or trimmed from the hub since.
        Err(_) => return Ok(trimmed),
    };
    // A message the hub's own ingest stored for this cluster has no origin.
    let Some(origin) = newest
        .headers
        .get(STREAM_SOURCE_HEADER)
        .and_then(|value| origin_sequence(value.as_str()))
    else {
        return Ok(trimmed);
    };
    let below = origin + 1;
    // (Lower than before: the edge's stream was made anew.)
    if below == trimmed {
        return Ok(trimmed);
    }
    let at_edge = edge_context(nats, edge)
        .get_stream_no_info(names::EVENTS_STREAM)
        .await?;
    let purged = at_edge.purge().sequence(below).await?;
    if purged.purged > 0 {
        tracing::debug!(edge = %edge, purged = purged.purged, below, "Trimmed what the hub stored from an edge's stream.");
    }
    Ok(below)
}

/// The origin sequence in a `Nats-Stream-Source` header
/// (`<stream and its origin> <sequence> <filter> <destination> <subject>`).
fn origin_sequence(header: &str) -> Option<u64> {
    header.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_origin_sequence() {
        assert_eq!(
            super::origin_sequence(
                "HERALD_EVENTS:mHP1gLtx 42 herald.edge.e.events.* herald.events.a herald.edge.e.events.b A09gf9Mo"
            ),
            Some(42)
        );
        assert_eq!(super::origin_sequence("HERALD_EVENTS:x"), None);
        assert_eq!(super::origin_sequence(""), None);
    }
}
