//! A Provider's transport settings checked as Flux checks them
//! (flux-providers §2 and §3.4): its proxy URL, and the TLS material of a
//! Secret (`ca.crt`, `tls.crt` and `tls.key`, or the legacy `caFile`,
//! `certFile` and `keyFile`). Errors name the Secret and the key, never a
//! value: a proxy URL can hold a password and `tls.key` is a private key.

use std::sync::Arc;

use herald_flux::objects::SecretData;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// The longest proxy URL Flux accepts.
pub const MAX_PROXY_URL: usize = 2048;

/// Proxy schemes a Provider may use. Flux's are `http`, `https` and
/// `socks5`; `socks5h` says outright what Go does for `socks5` (the proxy
/// resolves the destination's name).
const PROXY_SCHEMES: [&str; 4] = ["http", "https", "socks5", "socks5h"];

/// Checks a proxy URL. `from` says where it was read, for the error.
///
/// # Errors
///
/// Why the URL cannot be a proxy, without the URL.
pub fn check_proxy(address: &str, from: &str) -> Result<reqwest::Url, String> {
    if address.len() > MAX_PROXY_URL {
        return Err(format!(
            "{from}: the proxy address is longer than {MAX_PROXY_URL} characters"
        ));
    }
    let url = reqwest::Url::parse(address)
        .map_err(|_| format!("{from}: the proxy address is not a URL"))?;
    if !PROXY_SCHEMES.contains(&url.scheme()) {
        return Err(format!(
            "{from}: the proxy address must start with http://, https://, socks5:// or socks5h://"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{from}: the proxy address has no host"));
    }
    Ok(url)
}

/// TLS material read from a Secret, checked: a CA bundle that alone is
/// trusted, and a client certificate with its key (both PEM).
#[derive(Debug, Default)]
pub struct TlsMaterial {
    pub ca_pem: Option<Vec<u8>>,
    pub identity_pem: Option<Vec<u8>>,
}

/// One of the three TLS values, under the key it was found.
struct Entry<'a> {
    key: &'static str,
    value: &'a [u8],
}

/// The value of `key`, or of its legacy name when `key` is absent (as
/// Flux reads them); `None` when the one read is empty.
fn entry<'a>(data: &'a SecretData, key: &'static str, legacy: &'static str) -> Option<Entry<'a>> {
    let (key, value) = match data.get(key) {
        Some(value) => (key, value),
        None => (legacy, data.get(legacy)?),
    };
    (!value.is_empty()).then_some(Entry { key, value })
}

/// Reads the TLS material of the Secret `secret` (`namespace/name`).
/// `required` is for `certSecretRef`, which must hold some; the `secretRef`
/// of a commit-status Provider is used only when it holds a CA or a whole
/// certificate pair, as in Flux.
///
/// # Errors
///
/// A certificate without its key (or the reverse), nothing usable in a
/// required Secret, or a value that is not what its key says: the error
/// names the key.
pub fn tls_material(
    data: &SecretData,
    secret: &str,
    required: bool,
) -> Result<Option<TlsMaterial>, String> {
    let ca = entry(data, "ca.crt", "caFile");
    let cert = entry(data, "tls.crt", "certFile");
    let key = entry(data, "tls.key", "keyFile");
    let pair = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) if !required => return Ok(None),
        (Some(cert), None) => {
            return Err(format!("Secret {secret} has {} but no tls.key", cert.key));
        }
        (None, Some(key)) => {
            return Err(format!("Secret {secret} has {} but no tls.crt", key.key));
        }
    };
    if ca.is_none() && pair.is_none() {
        return if required {
            Err(format!(
                "Secret {secret} must hold ca.crt, or both tls.crt and tls.key"
            ))
        } else {
            Ok(None)
        };
    }
    let mut material = TlsMaterial::default();
    if let Some(ca) = ca {
        check_ca(&ca).map_err(|problem| format!("Secret {secret}: {problem}"))?;
        material.ca_pem = Some(ca.value.to_vec());
    }
    if let Some((cert, key)) = pair {
        check_pair(&cert, &key).map_err(|problem| format!("Secret {secret}: {problem}"))?;
        material.identity_pem = Some([cert.value, b"\n", key.value].concat());
    }
    Ok(Some(material))
}

/// At least one certificate of the bundle can be a trust anchor (Go's
/// `AppendCertsFromPEM` asks no more).
fn check_ca(ca: &Entry<'_>) -> Result<(), String> {
    let certs = CertificateDer::pem_slice_iter(ca.value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("{} is not PEM", ca.key))?;
    let (added, _) = RootCertStore::empty().add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{} holds no usable PEM certificate", ca.key));
    }
    Ok(())
}

/// The certificate chain parses, the key parses, and the key is the
/// certificate's (Go's `tls.X509KeyPair` checks the same).
fn check_pair(cert: &Entry<'_>, key: &Entry<'_>) -> Result<(), String> {
    let chain = CertificateDer::pem_slice_iter(cert.value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("{} is not PEM", cert.key))?;
    if chain.is_empty() {
        return Err(format!("{} holds no PEM certificate", cert.key));
    }
    let private = PrivateKeyDer::from_pem_slice(key.value)
        .map_err(|_| format!("{} holds no PEM private key", key.key))?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(private)
        .map_err(|_| format!("{} holds a private key of an unsupported kind", key.key))?;
    match CertifiedKey::new(chain, Arc::clone(&signing)).keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(
            format!("{} is not the private key of {}", key.key, cert.key),
        ),
        Err(_) => Err(format!("{} is not a valid X.509 certificate", cert.key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA, and a client certificate it signed, in PEM.
    struct Pems {
        ca: String,
        cert: String,
        key: String,
        other_key: String,
    }

    fn pems() -> Pems {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        Pems {
            ca: ca.pem(),
            cert: cert.pem(),
            key: key.serialize_pem(),
            other_key: rcgen::KeyPair::generate().unwrap().serialize_pem(),
        }
    }

    fn data(pairs: &[(&str, &str)]) -> SecretData {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn proxies_must_be_http_https_or_socks5() {
        for good in [
            "http://proxy:3128",
            "https://proxy",
            "socks5://proxy:1080",
            "socks5h://u:p@proxy",
        ] {
            assert!(check_proxy(good, "x").is_ok(), "{good}");
        }
        for (bad, needle) in [
            ("ftp://proxy", "must start with http://"),
            ("user:S3cret@proxy:3128", "must start with http://"),
            ("proxy:3128", "must start with http://"),
            ("not a url", "is not a URL"),
            ("http://", "is not a URL"),
        ] {
            let error = check_proxy(bad, "Secret ns/px: address").unwrap_err();
            assert!(error.starts_with("Secret ns/px: address: "), "{error}");
            assert!(error.contains(needle), "{bad}: {error}");
            assert!(
                !error.contains("S3cret") && !error.contains("proxy:"),
                "{error}"
            );
        }
        let long = format!("http://proxy/{}", "a".repeat(MAX_PROXY_URL));
        assert!(
            check_proxy(&long, "x")
                .unwrap_err()
                .contains("longer than 2048")
        );
    }

    #[test]
    fn a_ca_and_a_matching_pair_are_accepted_under_new_or_legacy_keys() {
        let p = pems();
        let tls = tls_material(
            &data(&[("ca.crt", &p.ca), ("tls.crt", &p.cert), ("tls.key", &p.key)]),
            "ns/s",
            true,
        )
        .unwrap()
        .unwrap();
        assert_eq!(tls.ca_pem.unwrap(), p.ca.as_bytes());
        let identity = String::from_utf8(tls.identity_pem.unwrap()).unwrap();
        assert!(identity.contains(&p.cert) && identity.contains(&p.key));
        let legacy = tls_material(
            &data(&[("certFile", &p.cert), ("keyFile", &p.key)]),
            "ns/s",
            true,
        )
        .unwrap()
        .unwrap();
        assert!(legacy.ca_pem.is_none() && legacy.identity_pem.is_some());
        // The new key wins over the legacy one, even when it is broken.
        let error = tls_material(
            &data(&[("ca.crt", "junk"), ("caFile", &p.ca)]),
            "ns/s",
            true,
        )
        .unwrap_err();
        assert_eq!(error, "Secret ns/s: ca.crt holds no usable PEM certificate");
    }

    #[test]
    fn bad_material_names_the_key_and_never_its_value() {
        let p = pems();
        let cases: Vec<(Vec<(&str, &str)>, String)> = vec![
            (
                vec![("tls.crt", &p.cert)],
                "Secret ns/s has tls.crt but no tls.key".to_owned(),
            ),
            (
                vec![("ca.crt", &p.ca), ("keyFile", &p.key)],
                "Secret ns/s has keyFile but no tls.crt".to_owned(),
            ),
            (
                vec![("other", "x"), ("ca.crt", "")],
                "Secret ns/s must hold ca.crt, or both tls.crt and tls.key".to_owned(),
            ),
            (
                vec![
                    ("tls.crt", &p.cert),
                    ("tls.key", "-----BEGIN NOPE-----\nS3cret\n"),
                ],
                "Secret ns/s: tls.key holds no PEM private key".to_owned(),
            ),
            (
                vec![("tls.crt", "S3cret"), ("tls.key", &p.key)],
                "Secret ns/s: tls.crt holds no PEM certificate".to_owned(),
            ),
            (
                vec![("tls.crt", &p.cert), ("tls.key", &p.other_key)],
                "Secret ns/s: tls.key is not the private key of tls.crt".to_owned(),
            ),
            (
                vec![("ca.crt", &p.key)],
                "Secret ns/s: ca.crt holds no usable PEM certificate".to_owned(),
            ),
        ];
        for (pairs, expected) in cases {
            let error = tls_material(&data(&pairs), "ns/s", true).unwrap_err();
            assert_eq!(error, expected);
        }
    }

    #[test]
    fn an_optional_secret_without_whole_material_gives_none() {
        let p = pems();
        for pairs in [vec![("token", "t")], vec![("tls.crt", p.cert.as_str())]] {
            assert!(
                tls_material(&data(&pairs), "ns/s", false)
                    .unwrap()
                    .is_none()
            );
        }
        // What is there must still be valid.
        assert!(tls_material(&data(&[("ca.crt", "junk")]), "ns/s", false).is_err());
    }
}
