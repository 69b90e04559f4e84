//! A Provider and its Secrets resolved into what a send needs
//! (flux-providers §2), read from the catalog at send time.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use herald_flux::Provider;
use herald_flux::objects::{Secret, SecretData};
use herald_runtime::Snapshot;
use std::sync::Arc;

/// Everything a provider module needs to build its request. Holds secrets:
/// its `Debug` shows none of them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// `spec.type`.
    pub provider_type: String,
    /// The endpoint: `spec.address`, or the Secret's `address`.
    pub address: String,
    /// Whether `address` came from the Secret (and so is itself a secret).
    pub address_is_secret: bool,
    /// `spec.channel`.
    pub channel: String,
    /// `spec.username`, or the Secret's `username` when it has a password too.
    pub username: String,
    /// The Secret's `password` (with `username`).
    pub password: String,
    /// The Secret's `token`.
    pub token: String,
    /// Extra HTTP headers from the Secret's `headers`.
    pub headers: BTreeMap<String, String>,
    /// Proxy URL: `spec.proxy`, the Secret's `proxy`, or `proxySecretRef`.
    pub proxy: String,
    /// PEM CA bundle that alone is trusted, when given.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key, when given.
    pub client_identity_pem: Option<Vec<u8>>,
    /// The send deadline.
    pub timeout: Duration,
    /// The Provider's uid (`metadata.uid`, or one derived from its name):
    /// change-request comments are keyed by it.
    pub provider_uid: String,
    /// The vendor API endpoint the Provider's `herald.dev/endpoint`
    /// annotation names (types with a fixed API address), else empty.
    pub endpoint: String,
    /// The whole data of the `secretRef` Secret, for the keys only some
    /// types read (GitHub App keys, NATS credentials, cloud credentials).
    pub secret: Arc<Secret>,
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolved")
            .field("provider_type", &self.provider_type)
            .field("address_is_secret", &self.address_is_secret)
            .field("channel", &self.channel)
            .field("has_token", &!self.token.is_empty())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("has_proxy", &!self.proxy.is_empty())
            .field("has_ca", &self.ca_pem.is_some())
            .field(
                "has_client_certificate",
                &self.client_identity_pem.is_some(),
            )
            .field("timeout", &self.timeout)
            .field("secret_keys", &self.secret.data.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Resolved {
    /// Every secret value, for masking in error texts and excerpts.
    #[must_use]
    pub fn secrets(&self) -> Vec<&str> {
        let mut out = vec![self.token.as_str(), self.password.as_str()];
        if self.address_is_secret {
            out.push(self.address.as_str());
        }
        out.extend(self.headers.values().map(String::as_str));
        out.extend(self.proxy_credentials());
        // Every other value of the Secret long enough to be a credential
        // (private keys, seeds, client secrets), each line on its own too:
        // an error text may quote one line of a key file.
        for key in self.secret.data.keys() {
            let Some(value) = self.secret_text(key) else {
                continue;
            };
            out.extend(
                std::iter::once(value)
                    .chain(value.lines())
                    .map(str::trim)
                    .filter(|v| v.len() >= 8),
            );
        }
        out
    }

    /// The proxy URL, its `user:password` and its password, when it holds
    /// credentials (as written in the URL, percent-encoded).
    fn proxy_credentials(&self) -> Vec<&str> {
        let Some((_, rest)) = self.proxy.split_once("://") else {
            return Vec::new();
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let Some((userinfo, _)) = authority.rsplit_once('@') else {
            return Vec::new();
        };
        let mut out = vec![self.proxy.as_str(), userinfo];
        if let Some((_, password)) = userinfo.split_once(':') {
            out.push(password);
        }
        out
    }

    /// A value of the `secretRef` Secret as text, when it is UTF-8 and not
    /// empty once trimmed.
    #[must_use]
    pub fn secret_text(&self, key: &str) -> Option<&str> {
        self.secret
            .data
            .get(key)
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|v| !v.trim().is_empty())
    }

    /// The address as it may appear in logs: the scheme and host only when it
    /// is a secret (a Slack webhook URL is a credential).
    #[must_use]
    pub fn address_for_logs(&self) -> String {
        if !self.address_is_secret {
            return self.address.clone();
        }
        match reqwest::Url::parse(&self.address) {
            Ok(url) => format!("{}://{}/…", url.scheme(), url.host_str().unwrap_or("")),
            Err(_) => "(secret address)".to_owned(),
        }
    }
}

fn text(data: &SecretData, key: &str) -> Option<String> {
    data.get(key)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A `secretRef` Secret holding `data`, as a Provider resolves it.
#[must_use]
pub fn secret_holding(data: SecretData) -> Arc<Secret> {
    Arc::new(Secret {
        data,
        ..Secret::default()
    })
}

/// Why a Provider cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A `secretRef`, `proxySecretRef` or `certSecretRef` names no Secret.
    #[error("{field} names Secret {namespace}/{name}, which does not exist")]
    MissingSecret {
        field: &'static str,
        namespace: String,
        name: String,
    },
    /// `spec.serviceAccountName` (workload identity).
    #[error(
        "spec.serviceAccountName (workload identity) is not supported; put a token in the Secret of spec.secretRef"
    )]
    WorkloadIdentity,
    /// A Secret holds a value that cannot be used; never the value itself.
    #[error("Secret {secret}: {problem}")]
    BadSecret { secret: String, problem: String },
    /// A proxy or TLS setting that cannot be used (the text names the Secret
    /// and key, never a value).
    #[error("{0}")]
    Transport(String),
}

/// Resolves `provider` against the catalog's Secrets.
///
/// # Errors
///
/// A reason the Provider cannot be used, for its dead letters: a missing
/// Secret, an over-long address, unparsable headers, half of a basic-auth pair.
pub fn resolve(provider: &Provider, snapshot: &Snapshot) -> Result<Resolved, ResolveError> {
    let spec = &provider.spec;
    let namespace = &provider.meta.namespace;
    let secret_of = |name: &str, field: &'static str| {
        snapshot
            .secret(namespace, name)
            .ok_or_else(|| ResolveError::MissingSecret {
                field,
                namespace: namespace.clone(),
                name: name.to_owned(),
            })
    };
    let bad = |name: &str, problem: &str| ResolveError::BadSecret {
        secret: format!("{namespace}/{name}"),
        problem: problem.to_owned(),
    };
    if !spec.service_account_name.is_empty() {
        return Err(ResolveError::WorkloadIdentity);
    }
    let mut resolved = Resolved {
        provider_type: spec.type_.clone(),
        address: spec.address.clone(),
        channel: spec.channel.clone(),
        username: spec.username.clone(),
        proxy: spec.proxy.clone(),
        timeout: provider.timeout(),
        provider_uid: provider.uid(),
        endpoint: provider.endpoint().unwrap_or_default().to_owned(),
        ..Resolved::default()
    };
    if let Some(secret_ref) = &spec.secret_ref {
        let secret = secret_of(&secret_ref.name, "spec.secretRef")?;
        let data = &secret.data;
        resolved.secret = Arc::clone(&secret);
        if let Some(address) = text(data, "address") {
            if address.len() > 2048 {
                return Err(bad(&secret_ref.name, "address is longer than 2048 bytes"));
            }
            resolved.address = address.trim().to_owned();
            resolved.address_is_secret = true;
        }
        if let Some(proxy) = text(data, "proxy") {
            let proxy = proxy.trim();
            resolved.proxy = if proxy.is_empty() {
                String::new()
            } else {
                let from = format!("Secret {namespace}/{}: proxy", secret_ref.name);
                crate::transport::check_proxy(proxy, &from)
                    .map_err(ResolveError::Transport)?
                    .to_string()
            };
        }
        if let Some(headers) = text(data, "headers") {
            resolved.headers = serde_saphyr::from_str(&headers).map_err(|_| {
                bad(
                    &secret_ref.name,
                    "headers must be a YAML map of header names to values",
                )
            })?;
        }
        if let Some(token) = text(data, "token") {
            resolved.token = token;
        }
        match (text(data, "username"), text(data, "password")) {
            (Some(username), Some(password)) => {
                resolved.username = username;
                resolved.password = password;
            }
            (None, None) => {}
            _ => {
                return Err(bad(
                    &secret_ref.name,
                    "username and password must be set together",
                ));
            }
        }
        if provider
            .provider_type()
            .is_some_and(|t| t.is_commit_status())
            && spec.cert_secret_ref.is_none()
        {
            let secret = format!("{namespace}/{}", secret_ref.name);
            if let Some(tls) = crate::transport::tls_material(data, &secret, false)
                .map_err(ResolveError::Transport)?
            {
                resolved.ca_pem = tls.ca_pem;
                resolved.client_identity_pem = tls.identity_pem;
            }
        }
    }
    if let Some(proxy_ref) = &spec.proxy_secret_ref {
        let secret = secret_of(&proxy_ref.name, "spec.proxySecretRef")?;
        let from = format!("Secret {namespace}/{}", proxy_ref.name);
        let address = text(&secret.data, "address")
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .ok_or_else(|| bad(&proxy_ref.name, "address (the proxy URL) is required"))?;
        let mut url = crate::transport::check_proxy(&address, &format!("{from}: address"))
            .map_err(ResolveError::Transport)?;
        // As Flux: a username alone, or a username and its password; a
        // password without a username is ignored.
        if let Some(user) = text(&secret.data, "username") {
            let password = text(&secret.data, "password");
            url.set_username(&user)
                .and_then(|()| url.set_password(password.as_deref()))
                .map_err(|()| bad(&proxy_ref.name, "address cannot carry a username"))?;
        }
        resolved.proxy = url.to_string();
    }
    if let Some(cert_ref) = &spec.cert_secret_ref {
        let secret = secret_of(&cert_ref.name, "spec.certSecretRef")?;
        let name = format!("{namespace}/{}", cert_ref.name);
        let tls = crate::transport::tls_material(&secret.data, &name, true)
            .map_err(ResolveError::Transport)?
            .unwrap_or_default();
        resolved.ca_pem = tls.ca_pem;
        resolved.client_identity_pem = tls.identity_pem;
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_flux::objects::parse_documents;
    use herald_runtime::catalog::Snapshot;

    fn snapshot(yaml: &str) -> Snapshot {
        let objects = parse_documents(yaml, "ns")
            .unwrap()
            .into_iter()
            .map(|o| (std::path::PathBuf::from("t.yaml"), o.unwrap()))
            .collect();
        Snapshot::from_objects(objects, Vec::new(), &Default::default())
    }

    fn provider(snapshot: &Snapshot) -> Provider {
        (*snapshot.provider("ns", "p").unwrap()).clone()
    }

    const P: &str =
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: p}\n";

    #[test]
    fn secret_values_override_the_spec() {
        let s = snapshot(&format!(
            "{P}spec: {{type: slack, address: 'https://spec', channel: c, username: u, secretRef: {{name: s}}, timeout: 5s}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData:\n  address: ' https://hooks.example/T/B/X '\n  token: xoxb-1\n  headers: |\n    X-A: b\n"
        ));
        let r = resolve(&provider(&s), &s).unwrap();
        assert_eq!(r.address, "https://hooks.example/T/B/X");
        assert!(r.address_is_secret);
        assert_eq!(r.token, "xoxb-1");
        assert_eq!(r.channel, "c");
        assert_eq!(r.username, "u");
        assert_eq!(r.headers["X-A"], "b");
        assert_eq!(r.timeout, Duration::from_secs(5));
        assert_eq!(r.address_for_logs(), "https://hooks.example/…");
        let debug = format!("{r:?}");
        assert!(
            !debug.contains("xoxb") && !debug.contains("/T/B/X"),
            "{debug}"
        );
    }

    #[test]
    fn unusable_providers_say_why() {
        let cases = [
            (
                format!("{P}spec: {{type: slack, secretRef: {{name: missing}}}}"),
                "spec.secretRef names Secret ns/missing, which does not exist",
            ),
            (
                format!(
                    "{P}spec: {{type: slack, secretRef: {{name: s}}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData: {{username: u}}"
                ),
                "username and password must be set together",
            ),
            (
                format!(
                    "{P}spec: {{type: generic, secretRef: {{name: s}}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData: {{headers: '[1, 2]'}}"
                ),
                "headers must be a YAML map",
            ),
            (
                format!(
                    "{P}spec: {{type: generic, certSecretRef: {{name: s}}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData: {{other: x}}"
                ),
                "Secret ns/s must hold ca.crt, or both tls.crt and tls.key",
            ),
            (
                format!("{P}spec: {{type: azuredevops, serviceAccountName: sa}}"),
                "spec.serviceAccountName (workload identity) is not supported",
            ),
        ];
        for (yaml, needle) in cases {
            let s = snapshot(&yaml);
            let err = resolve(&provider(&s), &s).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
    }

    #[test]
    fn proxy_secret_builds_a_url_with_credentials() {
        let s = snapshot(&format!(
            "{P}spec: {{type: generic, address: 'http://x', proxySecretRef: {{name: px}}}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: px}}\nstringData: {{address: 'http://proxy:8080', username: a, password: b}}"
        ));
        let r = resolve(&provider(&s), &s).unwrap();
        assert_eq!(r.proxy, "http://a:b@proxy:8080/");
        let secrets = r.secrets();
        assert!(secrets.contains(&"http://a:b@proxy:8080/") && secrets.contains(&"a:b"));
        assert!(!format!("{r:?}").contains("a:b"));
    }

    #[test]
    fn the_last_proxy_wins_and_each_is_checked_without_showing_it() {
        let spec_only = snapshot(&format!(
            "{P}spec: {{type: generic, address: 'http://x', proxy: 'http://spec:3128', secretRef: {{name: s}}}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData: {{token: t}}"
        ));
        let r = resolve(&provider(&spec_only), &spec_only).unwrap();
        assert_eq!(r.proxy, "http://spec:3128");
        let socks = snapshot(&format!(
            "{P}spec: {{type: generic, address: 'http://x', proxy: 'http://spec:3128', secretRef: {{name: s}}, proxySecretRef: {{name: px}}}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData: {{proxy: ' http://secret:3128 '}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: px}}\nstringData: {{address: 'socks5://socks:1080', username: only}}"
        ));
        let r = resolve(&provider(&socks), &socks).unwrap();
        assert_eq!(r.proxy, "socks5://only@socks:1080");
        let cases = [
            (
                "{proxy: 'ftp://u:S3cret@proxy'}",
                "{address: 'http://p:1'}",
                "Secret ns/s: proxy: the proxy address must start with http://",
            ),
            (
                "{token: t}",
                "{username: u, password: S3cret}",
                "Secret ns/px: address (the proxy URL) is required",
            ),
            (
                "{token: t}",
                "{address: 'u:S3cret@proxy:3128'}",
                "Secret ns/px: address: the proxy address must start with http://",
            ),
        ];
        for (secret, proxy_secret, needle) in cases {
            let s = snapshot(&format!(
                "{P}spec: {{type: generic, address: 'http://x', secretRef: {{name: s}}, proxySecretRef: {{name: px}}}}\n---\n\
                 apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData: {secret}\n---\n\
                 apiVersion: v1\nkind: Secret\nmetadata: {{name: px}}\nstringData: {proxy_secret}"
            ));
            let error = resolve(&provider(&s), &s).unwrap_err().to_string();
            assert!(error.starts_with(needle), "{error:?} is not {needle:?}");
            assert!(!error.contains("S3cret"), "{error}");
        }
    }
}
