//! Serving TLS from a certificate and key kept in files, read again when
//! they change: a certificate renewed by cert-manager (or any tool that
//! rewrites the files, or swaps the symlinks of a mounted Secret) is served
//! to new connections without a restart. A pair that cannot be used keeps
//! the one before it.
//!
//! Only the `ring` provider is used, whatever the process installed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::Metrics;

/// The certificate a listener serves TLS with.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Serve HTTPS and gRPC over TLS with this certificate chain (PEM, the
    /// server's certificate first). The file is read again when it changes.
    #[arg(long, env = "HERALD_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of `--tls-cert-file` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "HERALD_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
}

/// How often the files are checked for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// Why a certificate and key cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of the two files was given.
    #[error("--tls-cert-file and --tls-key-file go together")]
    Incomplete,
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// The key cannot sign, or is not the certificate's.
    #[error("the key in {key} does not go with the certificate in {cert}: {source}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the configuration.
    #[error("cannot configure TLS: {0}")]
    Config(#[source] rustls::Error),
}

/// A certificate and key read from files; cheap to clone. Every acceptor
/// made from it serves the pair as last read.
#[derive(Debug, Clone)]
pub struct ServerCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Arc<ArcSwap<CertifiedKey>>,
}

/// Hands every handshake the pair as last read.
#[derive(Debug)]
struct Resolver(Arc<ArcSwap<CertifiedKey>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

// === impl ServerCert ===

impl ServerCert {
    /// The pair `args` names, or `None` when TLS is not asked for.
    ///
    /// # Errors
    ///
    /// When only one file is named, or the pair cannot be used (see
    /// [`ServerCert::open`]).
    pub fn from_args(args: &TlsArgs) -> Result<Option<Self>, TlsError> {
        match (&args.tls_cert_file, &args.tls_key_file) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Self::open(cert, key).map(Some),
            _ => Err(TlsError::Incomplete),
        }
    }

    /// Reads the pair once.
    ///
    /// # Errors
    ///
    /// When a file cannot be read, holds no PEM certificate or key, or the
    /// key is not the certificate's.
    pub fn open(cert_file: &Path, key_file: &Path) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = load(cert_file, key_file, &provider)?;
        Ok(Self {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            provider,
            current: Arc::new(ArcSwap::from_pointee(key)),
        })
    }

    /// An acceptor that offers `alpn` (e.g. `h2`, `http/1.1`).
    ///
    /// # Errors
    ///
    /// When rustls refuses its protocol versions (it does not for ring).
    pub fn acceptor(&self, alpn: &[&[u8]]) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(Arc::clone(&self.current))));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    /// Reads the pair again whenever either file changes, until `cancel`
    /// fires; a pair that cannot be used keeps the one served now, and is
    /// logged as an error (and counted as `failed`).
    pub async fn watch(self, metrics: Metrics, cancel: CancellationToken) {
        let stamp = |path: &Path| -> Option<(SystemTime, u64)> {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        };
        let stamps = || (stamp(&self.cert_file), stamp(&self.key_file));
        let mut last = stamps();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(RELOAD_EVERY) => {}
            }
            let now = stamps();
            if now == last {
                continue;
            }
            last = now;
            match load(&self.cert_file, &self.key_file, &self.provider) {
                Ok(key) => {
                    self.current.store(Arc::new(key));
                    metrics.tls_reload("loaded");
                    tracing::info!(cert = %self.cert_file.display(), "TLS certificate reloaded.");
                }
                Err(error) => {
                    metrics.tls_reload("failed");
                    tracing::error!(error = %error, "Cannot reload the TLS certificate; still serving the previous one.");
                }
            }
        }
    }
}

fn load(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let pem = |path: &Path, what: String| TlsError::Pem {
        path: path.to_owned(),
        what,
    };
    let cert_pem = read(cert_file)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(cert_file, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(pem(cert_file, "holds no PEM certificate".to_owned()));
    }
    let key_pem = read(key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        pem(
            key_file,
            format!("holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let mismatch = |source| TlsError::Mismatch {
        cert: cert_file.to_owned(),
        key: key_file.to_owned(),
        source,
    };
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(mismatch)?;
    let certified = CertifiedKey::new(chain, signing);
    // Unlike `CertifiedKey::from_der`, a key whose match cannot be checked
    // is refused too: ring's keys can always be checked.
    certified.keys_match().map_err(mismatch)?;
    Ok(certified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(dir: &Path, (cert, key): &(String, String)) -> (PathBuf, PathBuf) {
        let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        (c, k)
    }

    #[test]
    fn a_good_pair_opens() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write(dir.path(), &pair("localhost"));
        let opened = ServerCert::open(&cert, &key).unwrap();
        assert_eq!(opened.current.load().cert.len(), 1);
        opened.acceptor(&[b"h2"]).unwrap();
    }

    #[test]
    fn bad_pairs_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (pair("a"), pair("b"));
        let (cert, key) = write(dir.path(), &(a.0.clone(), b.1.clone()));
        let error = ServerCert::open(&cert, &key).unwrap_err().to_string();
        assert!(
            error.contains("does not go with the certificate"),
            "{error}"
        );

        let (cert, key) = write(dir.path(), &("not pem".to_owned(), a.1.clone()));
        let error = ServerCert::open(&cert, &key).unwrap_err().to_string();
        assert!(error.contains("holds no PEM certificate"), "{error}");

        let (cert, key) = write(dir.path(), &(a.0.clone(), a.0.clone()));
        let error = ServerCert::open(&cert, &key).unwrap_err().to_string();
        assert!(error.contains("holds no PEM private key"), "{error}");

        let error = ServerCert::open(&dir.path().join("absent.crt"), &key)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("cannot read "), "{error}");

        let only_cert = TlsArgs {
            tls_cert_file: Some(cert),
            tls_key_file: None,
        };
        assert!(matches!(
            ServerCert::from_args(&only_cert),
            Err(TlsError::Incomplete)
        ));
        assert!(
            ServerCert::from_args(&TlsArgs::default())
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_pair_is_served_and_a_bad_one_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = pair("first");
        let (cert, key) = write(dir.path(), &first);
        let served = ServerCert::open(&cert, &key).unwrap();
        let metrics = Metrics::new();
        let cancel = CancellationToken::new();
        let watch = tokio::spawn(served.clone().watch(metrics.clone(), cancel.clone()));
        let leaf = || served.current.load().cert[0].clone();
        let original = leaf();
        // Let the watch take its first look at the files.
        tokio::time::sleep(Duration::from_millis(10)).await;

        let second = pair("second-with-a-longer-name");
        write(dir.path(), &second);
        tokio::time::sleep(RELOAD_EVERY * 2).await;
        let renewed = leaf();
        assert_ne!(renewed, original);
        assert_eq!(
            renewed,
            CertificateDer::from_pem_slice(second.0.as_bytes()).unwrap()
        );

        std::fs::write(&cert, "garbage").unwrap();
        tokio::time::sleep(RELOAD_EVERY * 2).await;
        assert_eq!(leaf(), renewed);
        let text = metrics.encode();
        assert!(
            text.contains(r#"herald_tls_certificate_reloads_total{outcome="failed"} 1"#),
            "{text}"
        );
        cancel.cancel();
        watch.await.unwrap();
    }
}
