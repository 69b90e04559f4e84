//! Cluster identity: a Flux controller names its cluster with HTTP basic auth
//! in its `--events-addr` (`http://<cluster>:<token>@herald/`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use base64::Engine as _;

use crate::intake::IngestError;

/// Who may send events, and the cluster name stamped on them.
#[derive(Clone, Debug)]
pub struct Clusters {
    default: String,
    tokens: Option<Arc<BTreeMap<String, String>>>,
}

// === impl Clusters ===

impl Clusters {
    /// Every request is stamped `default`; no credentials are checked.
    #[must_use]
    pub fn open(default: &str) -> Self {
        Self {
            default: default.to_owned(),
            tokens: None,
        }
    }

    /// Only the listed clusters, each with its token, may send.
    #[must_use]
    pub fn with_tokens(default: &str, tokens: BTreeMap<String, String>) -> Self {
        Self {
            default: default.to_owned(),
            tokens: Some(Arc::new(tokens)),
        }
    }

    /// Whether credentials are checked (a clusters file is configured).
    #[must_use]
    pub fn is_checked(&self) -> bool {
        self.tokens.is_some()
    }

    /// Reads a YAML map of cluster name to token.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is not such a map.
    pub fn from_file(default: &str, path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read clusters file {}: {e}", path.display()))?;
        let tokens: BTreeMap<String, String> = serde_saphyr::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "clusters file {} must map cluster names to tokens: {e}",
                path.display()
            )
        })?;
        if tokens.values().any(String::is_empty) {
            anyhow::bail!("clusters file {}: a token is empty", path.display());
        }
        Ok(Self::with_tokens(default, tokens))
    }

    /// The cluster a request comes from.
    ///
    /// # Errors
    ///
    /// [`IngestError::Unauthorized`] when clusters are configured and the
    /// request's basic auth names none of them with its token.
    pub fn identify(&self, headers: &HeaderMap) -> Result<String, IngestError> {
        let Some(tokens) = &self.tokens else {
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
        let expected = tokens.get(cluster);
        // Compare in constant time, and as long for unknown clusters.
        let matches = constant_time_eq(
            expected.map_or("\u{0}unknown", String::as_str).as_bytes(),
            token.as_bytes(),
        );
        if expected.is_some() && matches {
            Ok(cluster.to_owned())
        } else {
            Err(unauthorized("unknown cluster or wrong token"))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    diff == 0
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
        let c = Clusters::with_tokens(
            "local",
            BTreeMap::from([("prod-eu".to_owned(), "s3cret".to_owned())]),
        );
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
