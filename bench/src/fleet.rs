//! A fleet of clusters for the `fairness` and `clusters` scenarios: a
//! clusters file as `herald cluster add` writes it (each token stored as its
//! SHA-256), and the basic-auth credentials each cluster's Flux controllers
//! would POST with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use herald_runtime::clusters::ClustersFile;

use crate::load::Credentials;

/// The clusters file and every cluster's credentials.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// Where the clusters file was written.
    pub file: PathBuf,
    /// `(name, token)` of each cluster, in the order they were added.
    pub clusters: Vec<(String, String)>,
}

impl Fleet {
    /// Writes `<dir>/clusters.yaml` with `count` clusters named
    /// `<prefix>-<n>`, each with a new random token kept hashed.
    pub fn write(dir: &Path, prefix: &str, count: usize) -> anyhow::Result<Self> {
        let mut file = ClustersFile::default();
        let mut clusters = Vec::with_capacity(count);
        for n in 0..count {
            let name = format!("{prefix}-{n:04}");
            let labels = BTreeMap::from([("bench".to_owned(), prefix.to_owned())]);
            let token = file.add(&name, labels)?;
            clusters.push((name, token));
        }
        let path = dir.join("clusters.yaml");
        std::fs::write(&path, file.render())?;
        Ok(Self {
            file: path,
            clusters,
        })
    }

    /// The basic auth of every cluster, in order.
    pub fn credentials(&self) -> Credentials {
        Credentials::basic(
            self.clusters
                .iter()
                .map(|(name, token)| (name.as_str(), token.as_str())),
        )
    }

    /// `--clusters-file <file>`.
    pub fn flag(&self) -> [String; 2] {
        [
            "--clusters-file".to_owned(),
            self.file.display().to_string(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_verifies_every_cluster_and_keeps_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let fleet = Fleet::write(dir.path(), "quiet", 3).unwrap();
        let text = std::fs::read_to_string(&fleet.file).unwrap();
        let parsed = ClustersFile::parse(&text).unwrap();
        for (name, token) in &fleet.clusters {
            assert!(parsed.verify(name, token), "{name}");
            assert!(!text.contains(token.as_str()));
        }
        assert!(text.contains("tokenHash: sha256:"));
        assert_eq!(fleet.credentials().len(), 3);
    }
}
