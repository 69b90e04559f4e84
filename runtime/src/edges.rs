//! Edges: clusters whose ingest stores events on a JetStream leaf node of
//! their own, in its own domain, for the hub's HERALD_EVENTS to source.
//!
//! The hub decides which cluster each edge is. Every event the hub sources
//! from an edge goes through a subject transform that writes the cluster
//! the hub assigned into the subject (`herald.events.<cluster>`), whatever
//! cluster the edge named; the router takes an event's cluster from that
//! subject, never from what the edge wrote in the event.

use std::fmt;
use std::str::FromStr;

use async_nats::jetstream::stream;
use herald_proto::names;

/// One edge: the cluster the hub assigns its events, and its JetStream domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// The cluster its events are from, as the hub names it.
    pub cluster: String,
    /// The JetStream domain of its leaf node (`jetstream { domain }`).
    pub domain: String,
}

/// Why an `--edge` value is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    #[error("{0:?} is not CLUSTER=DOMAIN (e.g. --edge shop-eu=edge-shop-eu)")]
    Form(String),
    #[error(
        "{0:?} is not a JetStream domain: use letters, digits, '-' and '_' only \
         (the leaf node's `jetstream {{ domain }}`)"
    )]
    Domain(String),
}

/// Checks that `text` can be a JetStream domain (one subject token of
/// letters, digits, `-` and `_`).
///
/// # Errors
///
/// [`EdgeError::Domain`] when it cannot.
pub fn parse_domain(text: &str) -> Result<String, EdgeError> {
    let valid = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(EdgeError::Domain(text.to_owned()))
    }
}

impl FromStr for Edge {
    type Err = EdgeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (cluster, domain) = text
            .split_once('=')
            .filter(|(cluster, _)| !cluster.is_empty())
            .ok_or_else(|| EdgeError::Form(text.to_owned()))?;
        Ok(Self {
            cluster: cluster.to_owned(),
            domain: parse_domain(domain)?,
        })
    }
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.cluster, self.domain)
    }
}

// === impl Edge ===

impl Edge {
    /// The source the hub's HERALD_EVENTS reads this edge with: the edge's
    /// HERALD_EVENTS through its domain's JetStream API, its events only,
    /// each put on the subject of the cluster the hub assigned. Sourcing
    /// keeps every header (`Nats-Msg-Id` among them), so the hub's
    /// duplicate window applies to what it sources.
    #[must_use]
    pub fn source(&self) -> stream::Source {
        stream::Source {
            name: names::EVENTS_STREAM.to_owned(),
            external: Some(stream::External {
                api_prefix: format!("$JS.{}.API", self.domain),
                delivery_prefix: None,
            }),
            subject_transforms: vec![stream::SubjectTransform {
                source: names::edge_events_filter(&self.domain),
                destination: names::event_subject(&self.cluster),
            }],
            ..stream::Source::default()
        }
    }
}

/// Checks that no two edges share a cluster or a domain.
///
/// # Errors
///
/// A message naming the first clash.
pub fn check_distinct(edges: &[Edge]) -> Result<(), String> {
    for (i, edge) in edges.iter().enumerate() {
        for other in &edges[..i] {
            if other.cluster == edge.cluster {
                return Err(format!(
                    "--edge {other} and --edge {edge} assign the same cluster to two edges"
                ));
            }
            if other.domain == edge.domain {
                return Err(format!(
                    "--edge {other} and --edge {edge} source the same JetStream domain twice"
                ));
            }
        }
    }
    Ok(())
}

/// What a process does with the sources of HERALD_EVENTS when it creates or
/// updates the stream.
#[derive(Debug, Clone, Copy)]
pub enum EventSources<'a> {
    /// Set them to these edges (the router, which owns them): adds and
    /// removes sources to match.
    Own(&'a [Edge]),
    /// Keep whatever sources the stream has (ingest, which never strips the
    /// router's).
    Keep,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_equals_domain() {
        let edge: Edge = "shop.eu=edge-shop_eu".parse().unwrap();
        assert_eq!(edge.cluster, "shop.eu");
        assert_eq!(edge.domain, "edge-shop_eu");
        assert_eq!(edge.to_string(), "shop.eu=edge-shop_eu");
    }

    #[test]
    fn refuses_malformed_edges_saying_the_form() {
        for bad in ["shop", "=edge", ""] {
            let error = bad.parse::<Edge>().unwrap_err().to_string();
            assert!(error.contains("CLUSTER=DOMAIN"), "{bad}: {error}");
        }
        for bad in ["shop=", "shop=a.b", "shop=a b", "shop=>", "shop=*"] {
            let error = bad.parse::<Edge>().unwrap_err().to_string();
            assert!(error.contains("not a JetStream domain"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_source_stamps_the_assigned_cluster() {
        let source = Edge {
            cluster: "shop.eu".to_owned(),
            domain: "edge-1".to_owned(),
        }
        .source();
        assert_eq!(source.name, names::EVENTS_STREAM);
        assert_eq!(source.external.unwrap().api_prefix, "$JS.edge-1.API");
        assert_eq!(
            source.subject_transforms,
            vec![stream::SubjectTransform {
                source: "herald.edge.edge-1.events.*".to_owned(),
                destination: "herald.events.shop_2Eeu".to_owned(),
            }]
        );
    }

    #[test]
    fn clusters_and_domains_are_distinct() {
        let edge = |text: &str| text.parse::<Edge>().unwrap();
        assert!(check_distinct(&[edge("a=d1"), edge("b=d2")]).is_ok());
        assert!(check_distinct(&[edge("a=d1"), edge("a=d2")]).is_err());
        assert!(check_distinct(&[edge("a=d1"), edge("b=d1")]).is_err());
    }
}
