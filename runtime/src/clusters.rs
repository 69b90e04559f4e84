//! The clusters file: which clusters may post events (each with its token,
//! stored hashed) and the labels Alerts select clusters by.
//!
//! ```yaml
//! prod-eu:
//!   tokenHash: sha256:9f86d08188...   # what `herald cluster add` writes
//!   labels: {env: prod, region: eu}
//! staging: an0ther                    # the older form: a plain token, no labels
//! edge-7:
//!   tokenHash: sha256:...
//!   kubeConfig: {secretRef: {name: edge-7-kubeconfig}, key: value}
//! ```
//!
//! `kubeConfig` makes the cluster a *member*: Herald also reads its own
//! Alerts, Providers and Secrets (through the kubeconfig in that Secret, in
//! Herald's namespace, as Flux reaches remote clusters), which hear only
//! its events.
//!
//! Ingest checks tokens; the router reads labels for
//! `herald.dev/cluster-selector`. The file is read again when it changes, so
//! a cluster added with `herald cluster add` is accepted without a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// Where the clusters file is.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClustersArgs {
    /// The clusters file: cluster names with their tokens (hashed) and
    /// labels. With it, ingest refuses events without a known cluster and
    /// token; the router selects clusters by its labels.
    #[arg(long, env = "HERALD_CLUSTERS_FILE")]
    pub clusters_file: Option<PathBuf>,
}

/// How often the file is checked for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// A cluster's token as the file keeps it.
#[derive(Clone, PartialEq, Eq)]
enum Token {
    /// The older form: the token itself.
    Plain(String),
    /// `sha256:<hex>` of the token.
    Sha256([u8; 32]),
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a token.
        match self {
            Self::Plain(_) => f.write_str("Plain(..)"),
            Self::Sha256(_) => f.write_str("Sha256(..)"),
        }
    }
}

/// One cluster of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    token: Token,
    /// Its labels (for `herald.dev/cluster-selector`).
    pub labels: BTreeMap<String, String>,
    /// Where its kubeconfig is, for its own Alerts and Providers.
    pub kube_config: Option<KubeConfigRef>,
}

/// A kubeconfig in a Secret of Herald's namespace (Flux's `kubeConfig`
/// shape: `secretRef.name`, and `key`, default `value`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeConfigRef {
    pub secret_ref: SecretName,
    #[serde(default = "default_key")]
    pub key: String,
}

/// `{name: ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretName {
    pub name: String,
}

fn default_key() -> String {
    "value".to_owned()
}

/// An entry as written: a plain token, or the full form.
#[derive(Deserialize)]
#[serde(untagged)]
enum Entry {
    Plain(String),
    Full(FullEntry),
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FullEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kube_config: Option<KubeConfigRef>,
}

/// The clusters of a clusters file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClustersFile {
    members: BTreeMap<String, Member>,
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    diff == 0
}

// === impl ClustersFile ===

impl ClustersFile {
    /// Parses the file's text.
    ///
    /// # Errors
    ///
    /// Not a map of cluster names to entries, an empty token, a hash that is
    /// not `sha256:` and 64 hex digits, or an entry with neither.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let entries: BTreeMap<String, Entry> = if text.trim().is_empty() {
            BTreeMap::new()
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                anyhow::anyhow!("must map cluster names to a token or {{tokenHash, labels}}: {e}")
            })?
        };
        let mut members = BTreeMap::new();
        for (name, entry) in entries {
            let (token, hash, labels, kube_config) = match entry {
                Entry::Plain(token) => (Some(token), None, BTreeMap::new(), None),
                Entry::Full(full) => (full.token, full.token_hash, full.labels, full.kube_config),
            };
            let token = match (token, hash) {
                (_, Some(hash)) => {
                    let digits = hash.strip_prefix("sha256:").ok_or_else(|| {
                        anyhow::anyhow!("{name}: tokenHash must start with sha256:")
                    })?;
                    let bytes = hex::decode(digits)
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok());
                    Token::Sha256(bytes.ok_or_else(|| {
                        anyhow::anyhow!("{name}: tokenHash must be sha256: and 64 hex digits")
                    })?)
                }
                (Some(token), None) if !token.is_empty() => Token::Plain(token),
                _ => anyhow::bail!("{name}: a token or tokenHash is required"),
            };
            members.insert(
                name,
                Member {
                    token,
                    labels,
                    kube_config,
                },
            );
        }
        Ok(Self { members })
    }

    /// Reads and parses `path`.
    ///
    /// # Errors
    ///
    /// When it cannot be read or parsed (see [`ClustersFile::parse`]).
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read clusters file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("clusters file {}: {e:#}", path.display()))
    }

    /// Whether `token` is `cluster`'s, compared in constant time (and as
    /// long for unknown clusters).
    #[must_use]
    pub fn verify(&self, cluster: &str, token: &str) -> bool {
        let presented = sha256(token);
        match self.members.get(cluster).map(|m| &m.token) {
            Some(Token::Sha256(expected)) => constant_time_eq(expected, &presented),
            Some(Token::Plain(expected)) => constant_time_eq(&sha256(expected), &presented),
            None => {
                constant_time_eq(&sha256("\u{0}unknown"), &presented);
                false
            }
        }
    }

    /// The labels of `cluster`, when the file lists it.
    #[must_use]
    pub fn labels(&self, cluster: &str) -> Option<&BTreeMap<String, String>> {
        self.members.get(cluster).map(|m| &m.labels)
    }

    /// Every cluster with its labels, by name.
    pub fn clusters(&self) -> impl Iterator<Item = (&str, &BTreeMap<String, String>)> {
        self.members.iter().map(|(n, m)| (n.as_str(), &m.labels))
    }

    /// The member clusters: those with a kubeconfig, by name.
    pub fn members(&self) -> impl Iterator<Item = (&str, &KubeConfigRef)> {
        self.members
            .iter()
            .filter_map(|(n, m)| m.kube_config.as_ref().map(|k| (n.as_str(), k)))
    }

    /// How many clusters still have a plain token.
    #[must_use]
    pub fn plain_tokens(&self) -> usize {
        self.members
            .values()
            .filter(|m| matches!(m.token, Token::Plain(_)))
            .count()
    }

    /// The file's text: every token hashed, labels kept.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# Herald clusters: name, the SHA-256 of its token (`herald cluster add`), labels.\n",
        );
        for (name, member) in &self.members {
            let hash = match &member.token {
                Token::Sha256(h) => hex::encode(h),
                Token::Plain(t) => hex::encode(sha256(t)),
            };
            let labels = member
                .labels
                .iter()
                .map(|(k, v)| format!("{}: {}", yaml_scalar(k), yaml_scalar(v)))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!(
                "{}:\n  tokenHash: sha256:{hash}\n",
                yaml_scalar(name)
            ));
            if !labels.is_empty() {
                out.push_str(&format!("  labels: {{{labels}}}\n"));
            }
            if let Some(kube) = &member.kube_config {
                out.push_str(&format!(
                    "  kubeConfig: {{secretRef: {{name: {}}}, key: {}}}\n",
                    yaml_scalar(&kube.secret_ref.name),
                    yaml_scalar(&kube.key)
                ));
            }
        }
        out
    }

    /// Adds `name` with a new random token and `labels`, and returns the
    /// token (the file keeps only its hash).
    ///
    /// # Errors
    ///
    /// When `name` is already listed or not a usable cluster name.
    pub fn add(&mut self, name: &str, labels: BTreeMap<String, String>) -> anyhow::Result<String> {
        if name.is_empty() || name.contains([':', '/', ' ']) {
            anyhow::bail!("{name:?} is not a usable cluster name (no ':', '/' or spaces)");
        }
        if self.members.contains_key(name) {
            anyhow::bail!(
                "cluster {name} is already in the file; remove it first to replace its token"
            );
        }
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| anyhow::anyhow!("no secure random source"))?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        self.members.insert(
            name.to_owned(),
            Member {
                token: Token::Sha256(sha256(&token)),
                labels,
                kube_config: None,
            },
        );
        Ok(token)
    }
}

/// A YAML scalar, quoted when plain style would change it.
fn yaml_scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~"
        )
        && text.parse::<f64>().is_err();
    if plain {
        text.to_owned()
    } else {
        serde_json::to_string(text).unwrap_or_default()
    }
}

/// The clusters file as it is now, read again when it changes. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Fleet {
    path: PathBuf,
    current: Arc<ArcSwap<ClustersFile>>,
}

// === impl Fleet ===

impl Fleet {
    /// Reads the file once.
    ///
    /// # Errors
    ///
    /// When it cannot be read or parsed.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = ClustersFile::read(path)?;
        if file.plain_tokens() > 0 {
            tracing::warn!(
                file = %path.display(),
                clusters = file.plain_tokens(),
                "The clusters file holds plain tokens; `herald cluster rehash` stores them hashed."
            );
        }
        Ok(Self {
            path: path.to_owned(),
            current: Arc::new(ArcSwap::from_pointee(file)),
        })
    }

    /// The file as last read.
    #[must_use]
    pub fn current(&self) -> Arc<ClustersFile> {
        self.current.load_full()
    }

    /// Reads the file again whenever it changes, until `cancel` fires; a
    /// file that cannot be read or parsed keeps the previous one.
    pub async fn watch(self, cancel: CancellationToken) {
        let stamp = |path: &Path| -> Option<(SystemTime, u64)> {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        };
        let mut last = stamp(&self.path);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(RELOAD_EVERY) => {}
            }
            let now = stamp(&self.path);
            if now == last {
                continue;
            }
            last = now;
            match ClustersFile::read(&self.path) {
                Ok(file) => {
                    tracing::info!(file = %self.path.display(), clusters = file.members.len(), "Clusters file reloaded.");
                    self.current.store(Arc::new(file));
                }
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "Cannot reload the clusters file; keeping the previous one.");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_and_new_forms_verify() {
        let file = ClustersFile::parse(&format!(
            "staging: an0ther\nprod-eu:\n  tokenHash: sha256:{}\n  labels: {{env: prod}}\n",
            hex::encode(sha256("s3cret"))
        ))
        .unwrap();
        assert!(file.verify("staging", "an0ther"));
        assert!(file.verify("prod-eu", "s3cret"));
        assert!(!file.verify("prod-eu", "an0ther"));
        assert!(!file.verify("nobody", "s3cret"));
        assert_eq!(file.labels("prod-eu").unwrap()["env"], "prod");
        assert_eq!(file.plain_tokens(), 1);
        assert!(!format!("{file:?}").contains("an0ther"));
    }

    #[test]
    fn add_prints_a_token_the_file_keeps_hashed() {
        let mut file = ClustersFile::parse("old: plain-token\n").unwrap();
        let token = file
            .add("prod-us", BTreeMap::from([("env".into(), "prod".into())]))
            .unwrap();
        assert!(token.len() >= 43);
        let text = file.render();
        assert!(
            !text.contains(&token) && !text.contains("plain-token"),
            "{text}"
        );
        let again = ClustersFile::parse(&text).unwrap();
        assert!(again.verify("prod-us", &token));
        assert!(again.verify("old", "plain-token"));
        assert_eq!(again.plain_tokens(), 0);
        assert_eq!(again.labels("prod-us").unwrap()["env"], "prod");
        assert!(file.add("prod-us", BTreeMap::new()).is_err());
        assert!(file.add("a:b", BTreeMap::new()).is_err());
    }

    #[test]
    fn member_clusters_name_their_kubeconfig() {
        let file = ClustersFile::parse(
            "edge:\n  token: t\n  kubeConfig: {secretRef: {name: edge-kc}}\nhub: u\n",
        )
        .unwrap();
        let members: Vec<_> = file.members().collect();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].0, "edge");
        assert_eq!(members[0].1.secret_ref.name, "edge-kc");
        assert_eq!(members[0].1.key, "value");
        let again = ClustersFile::parse(&file.render()).unwrap();
        assert_eq!(again.members().count(), 1);
        assert!(again.verify("edge", "t"));
    }

    #[test]
    fn bad_files_say_why() {
        assert!(ClustersFile::parse("a: ''\n").is_err());
        assert!(ClustersFile::parse("a: {tokenHash: md5:00}\n").is_err());
        assert!(ClustersFile::parse("a: {labels: {x: y}}\n").is_err());
        assert!(ClustersFile::parse("- a\n").is_err());
        assert_eq!(ClustersFile::parse("").unwrap(), ClustersFile::default());
    }
}
