//! A Provider and its Secrets resolved into what a send needs
//! (flux-providers §2), read from the catalog at send time.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use herald_flux::Provider;
use herald_runtime::Snapshot;

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
            .field("timeout", &self.timeout)
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
        out
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

fn text(data: &BTreeMap<String, Vec<u8>>, key: &str) -> Option<String> {
    data.get(key)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Resolves `provider` against the catalog's Secrets.
///
/// # Errors
///
/// A reason the Provider cannot be used, for its dead letters: a missing
/// Secret, an over-long address, unparsable headers, half of a basic-auth pair.
pub fn resolve(provider: &Provider, snapshot: &Snapshot) -> Result<Resolved, String> {
    let spec = &provider.spec;
    let namespace = &provider.meta.namespace;
    let secret_of = |name: &str, field: &str| {
        snapshot
            .secret(namespace, name)
            .ok_or_else(|| format!("{field} names Secret {namespace}/{name}, which does not exist"))
    };
    if !spec.service_account_name.is_empty() {
        return Err(
            "spec.serviceAccountName (workload identity) is not supported; put a token in the Secret of spec.secretRef"
                .to_owned(),
        );
    }
    let mut resolved = Resolved {
        provider_type: spec.type_.clone(),
        address: spec.address.clone(),
        channel: spec.channel.clone(),
        username: spec.username.clone(),
        proxy: spec.proxy.clone(),
        timeout: provider.timeout(),
        provider_uid: provider.uid(),
        ..Resolved::default()
    };
    if let Some(secret_ref) = &spec.secret_ref {
        let secret = secret_of(&secret_ref.name, "spec.secretRef")?;
        let data = &secret.data;
        if let Some(address) = text(data, "address") {
            if address.len() > 2048 {
                return Err(format!(
                    "Secret {namespace}/{}: address is longer than 2048 bytes",
                    secret_ref.name
                ));
            }
            resolved.address = address.trim().to_owned();
            resolved.address_is_secret = true;
        }
        if let Some(proxy) = text(data, "proxy") {
            resolved.proxy = proxy.trim().to_owned();
        }
        if let Some(headers) = text(data, "headers") {
            resolved.headers = serde_saphyr::from_str(&headers).map_err(|_| {
                format!(
                    "Secret {namespace}/{}: headers must be a YAML map of header names to values",
                    secret_ref.name
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
                return Err(format!(
                    "Secret {namespace}/{}: username and password must be set together",
                    secret_ref.name
                ));
            }
        }
        if provider
            .provider_type()
            .is_some_and(|t| t.is_commit_status())
            && spec.cert_secret_ref.is_none()
        {
            resolved.ca_pem = data.get("ca.crt").cloned();
        }
    }
    if let Some(proxy_ref) = &spec.proxy_secret_ref {
        let secret = secret_of(&proxy_ref.name, "spec.proxySecretRef")?;
        let address = text(&secret.data, "address")
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .ok_or_else(|| format!("Secret {namespace}/{}: address is required", proxy_ref.name))?;
        let mut url = reqwest::Url::parse(&address).map_err(|_| {
            format!(
                "Secret {namespace}/{}: address is not a URL",
                proxy_ref.name
            )
        })?;
        if let Some(user) = text(&secret.data, "username") {
            let password = text(&secret.data, "password");
            url.set_username(&user)
                .and_then(|()| url.set_password(password.as_deref()))
                .map_err(|()| {
                    format!(
                        "Secret {namespace}/{}: address cannot carry a username",
                        proxy_ref.name
                    )
                })?;
        }
        resolved.proxy = url.to_string();
    }
    if let Some(cert_ref) = &spec.cert_secret_ref {
        let secret = secret_of(&cert_ref.name, "spec.certSecretRef")?;
        let data = &secret.data;
        let ca = data.get("ca.crt").or_else(|| data.get("caFile")).cloned();
        let cert = data.get("tls.crt").or_else(|| data.get("certFile"));
        let key = data.get("tls.key").or_else(|| data.get("keyFile"));
        resolved.client_identity_pem = match (cert, key) {
            (Some(cert), Some(key)) => Some([cert.as_slice(), b"\n", key.as_slice()].concat()),
            (None, None) => None,
            _ => {
                return Err(format!(
                    "Secret {namespace}/{}: tls.crt and tls.key must be set together",
                    cert_ref.name
                ));
            }
        };
        if ca.is_none() && resolved.client_identity_pem.is_none() {
            return Err(format!(
                "Secret {namespace}/{}: needs ca.crt or a tls.crt and tls.key pair",
                cert_ref.name
            ));
        }
        resolved.ca_pem = ca;
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
        Snapshot::from_objects(objects, Vec::new())
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
                "needs ca.crt or a tls.crt and tls.key pair",
            ),
            (
                format!("{P}spec: {{type: azuredevops, serviceAccountName: sa}}"),
                "spec.serviceAccountName (workload identity) is not supported",
            ),
        ];
        for (yaml, needle) in cases {
            let s = snapshot(&yaml);
            let err = resolve(&provider(&s), &s).unwrap_err();
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
    }
}
