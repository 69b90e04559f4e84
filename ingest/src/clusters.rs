//! Cluster identity: a Flux controller names its cluster with HTTP basic auth
//! in its `--events-addr` (`http://<cluster>:<token>@herald/`).

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use herald_runtime::clusters::Fleet;

use crate::intake::IngestError;
use crate::share::Shares;

/// Who may send events, the cluster name stamped on them, and each
/// cluster's share of ingest.
#[derive(Clone, Debug)]
pub struct Clusters {
    default: String,
    fleet: Option<Fleet>,
    shares: Shares,
}

// === impl Clusters ===

impl Clusters {
    /// Every request is stamped `default`; no credentials are checked.
    #[must_use]
    pub fn open(default: &str) -> Self {
        Self {
            default: default.to_owned(),
            fleet: None,
            shares: Shares::unlimited(),
        }
    }

    /// Only the clusters of the clusters file, each with its token, may
    /// send; the file is read again when it changes.
    #[must_use]
    pub fn with_fleet(default: &str, fleet: Fleet) -> Self {
        Self {
            default: default.to_owned(),
            fleet: Some(fleet),
            shares: Shares::unlimited(),
        }
    }

    /// Gives each cluster `shares` of ingest (unlimited until then).
    #[must_use]
    pub fn with_shares(mut self, shares: Shares) -> Self {
        self.shares = shares;
        self
    }

    /// Each cluster's share of ingest.
    #[must_use]
    pub fn shares(&self) -> &Shares {
        &self.shares
    }

    /// Whether credentials are checked (a clusters file is configured).
    #[must_use]
    pub fn is_checked(&self) -> bool {
        self.fleet.is_some()
    }

    /// The cluster a request comes from.
    ///
    /// # Errors
    ///
    /// [`IngestError::Unauthorized`] when clusters are configured and the
    /// request's basic auth names none of them with its token.
    pub fn identify(&self, headers: &HeaderMap) -> Result<String, IngestError> {
        let Some(fleet) = &self.fleet else {
            return Ok(self.default.clone());
        };
        let unauthorized = |why: &str| IngestError::Unauthorized(why.to_owned());
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing credentials: put the cluster name and token in --events-addr as http://<cluster>:<token>@host/"))?;
        let encoded = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Basic "))
            .ok_or_else(|| unauthorized("expected HTTP basic auth"))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| unauthorized("malformed basic auth"))?;
        let (cluster, token) = decoded
            .split_once(':')
            .ok_or_else(|| unauthorized("malformed basic auth"))?;
        if fleet.current().verify(cluster, token) {
            Ok(cluster.to_owned())
        } else {
            Err(unauthorized("unknown cluster or wrong token"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {value}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn open_clusters_stamp_the_default() {
        let c = Clusters::open("local");
        assert_eq!(c.identify(&HeaderMap::new()).unwrap(), "local");
        assert_eq!(c.identify(&basic("x", "y")).unwrap(), "local");
    }

    #[test]
    fn configured_clusters_need_their_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clusters.yaml");
        std::fs::write(&path, "prod-eu: s3cret\n").unwrap();
        let c = Clusters::with_fleet("local", Fleet::open(&path).unwrap());
        assert_eq!(c.identify(&basic("prod-eu", "s3cret")).unwrap(), "prod-eu");
        for headers in [
            basic("prod-eu", "wrong"),
            basic("prod-eu", "s3cre"),
            basic("other", "s3cret"),
            HeaderMap::new(),
        ] {
            let err = c.identify(&headers).unwrap_err();
            assert!(matches!(err, IngestError::Unauthorized(_)), "{err}");
            assert!(!err.to_string().contains("s3cret"));
        }
    }
}
