//! `azureeventhub`: the event's Go JSON as the body of one Event Hubs event
//! (flux-providers §5.9). Flux sends it with the AMQP SDK; Herald uses the
//! documented HTTPS "Send event" call instead:
//! `POST https://{namespace}/{hub}/messages?timeout=60&api-version=2014-01`
//! with `Content-Type: application/atom+xml;type=entry;charset=utf-8`,
//! answered `201` (errors are `<Error><Code>…</Code><Detail>…</Detail></Error>`).
//!
//! Which credential applies follows Flux's rules:
//! 1. An address holding `SharedAccessKey` is a SAS connection string
//!    (`Endpoint=sb://…/;SharedAccessKeyName=…;SharedAccessKey=…;EntityPath=…`):
//!    every send carries a fresh SAS token signed with the key. With the
//!    Azure SDKs' `UseDevelopmentEmulator=true`, the endpoint is spoken to
//!    over plain `http://`.
//! 2. Otherwise the address is the event hub's name and `spec.channel` its
//!    namespace (`.servicebus.windows.net` appended unless it already holds
//!    `.servicebus.`), and the Secret's `token` (Flux's deprecated static JWT)
//!    is sent as a bearer token.
//! 3. Instead of a token, an Entra ID client credential (Secret `tenantId`,
//!    `clientId`, `clientSecret`, optional `authorityHost`) is exchanged for
//!    a token of scope `https://eventhubs.azure.net/.default`, cached by the
//!    sender until shortly before it expires and fetched anew on a 401.
//!
//! In modes 2 and 3 the Provider's `herald.dev/endpoint` annotation, when
//! set, replaces `https://{namespace}` (a private endpoint, or a local fake).
//! Workload identity (`spec.serviceAccountName`) is refused by the resolver.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::shared::{base64, bearer, path_escape, query_escape};
use super::{Clients, Exchange, Input, Plan, Provider, ProviderError, Writing};
use crate::classify::{self, Judge, Masker};
use crate::config::Resolved;
use crate::http::Answer;
use crate::outcome::Outcome;
use crate::tokens::{self, Token, TokenKey};
use herald_flux::FluxEvent;

/// The type's name in errors.
const WHAT: &str = "azureeventhub";
/// The content type Event Hubs' REST API asks for.
const CONTENT_TYPE: &str = "application/atom+xml;type=entry;charset=utf-8";
/// The query of every send.
const SEND_QUERY: &str = "timeout=60&api-version=2014-01";
/// The Entra ID scope of Event Hubs.
const SCOPE: &str = "https://eventhubs.azure.net/.default";
/// Where Entra ID issues tokens unless the Secret names another authority.
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com/";
/// How long a SAS token made for one send is valid.
const SAS_LIFETIME_SECONDS: i64 = 3600;
/// The reason prefix of a failed send.
const SEND_FAILED: &str = "could not send the event to Event Hubs";
/// The reason prefix of a failed token request.
const TOKEN_FAILED: &str = "could not get an Entra ID token for Event Hubs";

/// The Secret's keys of a client credential (the names Flux's
/// source-controller reads for Azure).
const TENANT_ID: &str = "tenantId";
const CLIENT_ID: &str = "clientId";
const CLIENT_SECRET: &str = "clientSecret";
const AUTHORITY_HOST: &str = "authorityHost";

/// `azureeventhub`.
pub(super) struct AzureEventHub;

impl Provider for AzureEventHub {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        let send = plan(input.resolved, input.event)?;
        Ok(Plan::Exchange(Box::new(send)))
    }
}

/// One event to send. Holds credentials: never log it.
struct Send {
    url: reqwest::Url,
    body: Vec<u8>,
    auth: Auth,
}

/// How a send authenticates.
enum Auth {
    /// A SAS token made from the connection string's key for each send.
    Sas(Sas),
    /// The Secret's static `token`.
    Token(String),
    /// An Entra ID client credential's token.
    Entra(ClientCredential),
}

/// A shared access key and the resource its tokens are for.
struct Sas {
    /// `https://{namespace}/{hub}`.
    resource: String,
    key_name: String,
    key: String,
}

/// An Entra ID application and its secret.
struct ClientCredential {
    /// `{authority}/{tenantId}/oauth2/v2.0/token`.
    token_url: String,
    client_id: String,
    client_secret: String,
    key: TokenKey,
}

/// The parts of a SAS connection string Herald uses.
#[derive(Debug, PartialEq, Eq)]
struct ConnectionString {
    /// `host[:port]` of `Endpoint`.
    authority: String,
    key_name: String,
    key: String,
    entity_path: String,
    emulator: bool,
}

/// Plans the send of `event`.
///
/// # Errors
///
/// What is missing or contradictory in the Provider, never quoting a secret.
fn plan(resolved: &Resolved, event: &FluxEvent) -> Result<Send, ProviderError> {
    let invalid = |problem: &str| ProviderError::invalid(WHAT, problem);
    let address = resolved.address.trim();
    if address.is_empty() {
        return Err(ProviderError::missing(
            WHAT,
            "no address: set the event hub name, or a SAS connection string, as spec.address or the Secret's address",
        ));
    }
    let client_credential = client_credential_keys(resolved);
    let sas = address.contains("SharedAccessKey");
    let (base, hub, auth) = if sas {
        if !resolved.token.trim().is_empty() {
            return Err(invalid(
                "invalid authentication options: jwt token and SAS authentication cannot be set at the same time",
            ));
        }
        if client_credential.iter().any(Option::is_some) {
            return Err(invalid(
                "invalid authentication options: a client credential (tenantId, clientId, clientSecret) and SAS authentication cannot be set at the same time",
            ));
        }
        let parsed = parse_connection_string(address).map_err(|p| invalid(&p))?;
        let scheme = if parsed.emulator { "http" } else { "https" };
        let auth = Auth::Sas(Sas {
            resource: format!("https://{}/{}", parsed.authority, parsed.entity_path),
            key_name: parsed.key_name,
            key: parsed.key,
        });
        (
            format!("{scheme}://{}", parsed.authority),
            parsed.entity_path,
            auth,
        )
    } else {
        let hub = address;
        if hub.contains(['/', ':', '?', '#']) || hub.contains(char::is_whitespace) {
            return Err(invalid(
                "the address must be the event hub name (or a SAS connection string)",
            ));
        }
        let authority = authority(resolved)?;
        let namespace = namespace_host(&resolved.channel, &authority).ok_or_else(|| {
            ProviderError::missing(
                WHAT,
                "no namespace: set spec.channel to the Event Hubs namespace (my-namespace, or my-namespace.servicebus.windows.net)",
            )
        })?;
        let base = if resolved.endpoint.is_empty() {
            format!("https://{namespace}")
        } else {
            resolved.endpoint.trim_end_matches('/').to_owned()
        };
        let auth = credential(resolved, &authority, client_credential)?;
        (base, hub.to_owned(), auth)
    };
    let url = format!("{base}/{}/messages?{SEND_QUERY}", path_escape(&hub));
    let url = reqwest::Url::parse(&url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            invalid(if sas {
                "the SAS connection string's Endpoint gives no valid URL"
            } else if resolved.endpoint.is_empty() {
                "the namespace (spec.channel) gives no valid URL"
            } else {
                "the herald.dev/endpoint annotation is not an http(s) URL"
            })
        })?;
    Ok(Send {
        url,
        body: event.to_go_json(),
        auth,
    })
}

/// The Secret's `tenantId`, `clientId` and `clientSecret`, each when set.
fn client_credential_keys(resolved: &Resolved) -> [Option<&str>; 3] {
    [TENANT_ID, CLIENT_ID, CLIENT_SECRET].map(|key| resolved.secret_text(key).map(str::trim))
}

/// The Entra ID authority: the Secret's `authorityHost`, else Azure's
/// public cloud; ending in `/`.
fn authority(resolved: &Resolved) -> Result<String, ProviderError> {
    let Some(host) = resolved.secret_text(AUTHORITY_HOST).map(str::trim) else {
        return Ok(DEFAULT_AUTHORITY.to_owned());
    };
    let ok = reqwest::Url::parse(host)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    if !ok {
        return Err(ProviderError::invalid(
            WHAT,
            "authorityHost in the Provider's Secret must be an https URL (e.g. https://login.microsoftonline.com/)",
        ));
    }
    Ok(format!("{}/", host.trim_end_matches('/')))
}

/// The namespace's host: `channel` as given when it holds `.servicebus.`,
/// else with the Service Bus domain of the authority's cloud appended.
/// `None` when the channel is empty.
fn namespace_host(channel: &str, authority: &str) -> Option<String> {
    let channel = channel.trim();
    let channel = ["sb://", "https://", "amqps://"]
        .iter()
        .find_map(|scheme| channel.strip_prefix(scheme))
        .unwrap_or(channel)
        .trim_end_matches('/');
    if channel.is_empty() {
        return None;
    }
    if channel.contains(".servicebus.") {
        return Some(channel.to_owned());
    }
    let suffix = if authority.contains("chinacloudapi.cn") {
        ".servicebus.chinacloudapi.cn"
    } else if authority.contains("microsoftonline.us") {
        ".servicebus.usgovcloudapi.net"
    } else {
        ".servicebus.windows.net"
    };
    Some(format!("{channel}{suffix}"))
}

/// The static token, or the client credential, of a Provider whose address
/// is a hub name.
fn credential(
    resolved: &Resolved,
    authority: &str,
    keys: [Option<&str>; 3],
) -> Result<Auth, ProviderError> {
    let token = resolved.token.trim();
    let any_key = keys.iter().any(Option::is_some);
    if !token.is_empty() {
        if any_key {
            return Err(ProviderError::invalid(
                WHAT,
                "invalid authentication options: jwt token and client credential (tenantId, clientId, clientSecret) authentication cannot be set at the same time",
            ));
        }
        return Ok(Auth::Token(token.to_owned()));
    }
    let [Some(tenant), Some(client_id), Some(client_secret)] = keys else {
        if !any_key {
            return Err(ProviderError::missing(
                WHAT,
                "no credential: set token, or tenantId, clientId and clientSecret, in the Provider's Secret, or a SAS connection string as the address (workload identity is not supported)",
            ));
        }
        let missing: Vec<&str> = [TENANT_ID, CLIENT_ID, CLIENT_SECRET]
            .iter()
            .zip(keys)
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| *name)
            .collect();
        return Err(ProviderError::missing(
            WHAT,
            format!(
                "a client credential needs tenantId, clientId and clientSecret in the Provider's Secret; missing: {}",
                missing.join(", ")
            ),
        ));
    };
    if tenant.contains(['/', '?', '#']) || tenant.contains(char::is_whitespace) {
        return Err(ProviderError::invalid(
            WHAT,
            "tenantId in the Provider's Secret must be a tenant id or domain",
        ));
    }
    let token_url = format!("{authority}{tenant}/oauth2/v2.0/token");
    Ok(Auth::Entra(ClientCredential {
        key: TokenKey::new(&[
            "entra-client-credential",
            &token_url,
            client_id,
            client_secret,
            SCOPE,
        ]),
        token_url,
        client_id: client_id.to_owned(),
        client_secret: client_secret.to_owned(),
    }))
}

/// Reads a SAS connection string: `;`-separated `key=value` pairs, keys in
/// any case, values that may end in `=` (base64 keys).
///
/// # Errors
///
/// What is missing or malformed, never quoting the string.
fn parse_connection_string(text: &str) -> Result<ConnectionString, String> {
    let mut fields = HashMap::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(
                "the SAS connection string is malformed: its parts must be key=value, separated by ;"
                    .to_owned(),
            );
        };
        fields.insert(key.trim().to_ascii_lowercase(), value.trim());
    }
    let field = |name: &str| {
        fields
            .get(&name.to_ascii_lowercase())
            .copied()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("the SAS connection string has no {name}"))
    };
    let endpoint = field("Endpoint")?;
    let key_name = field("SharedAccessKeyName")?;
    let key = field("SharedAccessKey")?;
    let entity_path = field("EntityPath").map_err(|e| format!("{e} (the event hub name)"))?;
    let url = reqwest::Url::parse(endpoint).ok();
    let authority = url
        .as_ref()
        .and_then(|u| {
            let host = u.host_str().filter(|h| !h.is_empty())?;
            Some(match u.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            })
        })
        .ok_or_else(|| {
            "the SAS connection string's Endpoint is not a URL like sb://my-namespace.servicebus.windows.net/"
                .to_owned()
        })?;
    let emulator = fields
        .get("usedevelopmentemulator")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Ok(ConnectionString {
        authority,
        key_name: key_name.to_owned(),
        key: key.to_owned(),
        entity_path: entity_path.to_owned(),
        emulator,
    })
}

/// A SAS token for `resource` valid until `expiry` (Unix seconds):
/// `SharedAccessSignature sr={enc(resource)}&sig={enc(base64(HMAC-SHA256(key,
/// enc(resource) + "\n" + expiry)))}&se={expiry}&skn={key_name}`, the key
/// used as its UTF-8 bytes, as Microsoft documents it.
fn sas_token(resource: &str, key_name: &str, key: &str, expiry: i64) -> String {
    let encoded = query_escape(resource);
    let to_sign = format!("{encoded}\n{expiry}");
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key");
    mac.update(to_sign.as_bytes());
    let signature = base64(&mac.finalize().into_bytes());
    format!(
        "SharedAccessSignature sr={encoded}&sig={}&se={expiry}&skn={}",
        query_escape(&signature),
        query_escape(key_name)
    )
}

impl Exchange for Send {
    fn run<'a>(&'a self, clients: &'a Clients, resolved: &'a Resolved) -> Writing<'a> {
        Box::pin(self.send(clients, resolved))
    }
}

// === impl Send ===

impl Send {
    async fn send(&self, clients: &Clients, resolved: &Resolved) -> Outcome {
        match &self.auth {
            Auth::Sas(sas) => {
                let expiry = tokens::unix_now() + SAS_LIFETIME_SECONDS;
                let token = sas_token(&sas.resource, &sas.key_name, &sas.key, expiry);
                self.post(clients, resolved, &token, &sas.key).await
            }
            Auth::Token(token) => self.post(clients, resolved, &bearer(token), token).await,
            Auth::Entra(credential) => {
                let token = match credential.token(clients, resolved).await {
                    Ok(token) => token,
                    Err(outcome) => return outcome,
                };
                let outcome = self.post(clients, resolved, &bearer(&token), &token).await;
                if Outcome::status(&outcome) != 401 {
                    return outcome;
                }
                // Refused (revoked, or the role was just granted): once more
                // with a new token.
                clients.tokens.forget(credential.key, &token).await;
                match credential.token(clients, resolved).await {
                    Ok(token) => self.post(clients, resolved, &bearer(&token), &token).await,
                    Err(outcome) => outcome,
                }
            }
        }
    }

    /// POSTs the event with `authorization`; `secret` is masked too.
    async fn post(
        &self,
        clients: &Clients,
        resolved: &Resolved,
        authorization: &str,
        secret: &str,
    ) -> Outcome {
        let headers = [
            ("Authorization".to_owned(), authorization.to_owned()),
            ("Content-Type".to_owned(), CONTENT_TYPE.to_owned()),
        ];
        let answer = clients
            .http
            .call(
                reqwest::Method::POST,
                self.url.clone(),
                &headers,
                Some(self.body.clone()),
                resolved,
            )
            .await;
        match answer {
            Ok(answer) if (200..300).contains(&answer.status) => Outcome::Delivered {
                status: answer.status,
            },
            Ok(answer) => {
                let masker = masker(resolved, &[secret, authorization]);
                let outcome = classify::classify(&answer, Judge::Status, &masker, SEND_FAILED);
                explained(outcome, service_bus_error(&answer.body, &masker))
            }
            Err(outcome) => outcome,
        }
    }
}

// === impl ClientCredential ===

impl ClientCredential {
    /// The cached token, else a new one.
    async fn token(&self, clients: &Clients, resolved: &Resolved) -> Result<String, Outcome> {
        clients
            .tokens
            .get(self.key, || self.fetch(clients, resolved))
            .await
    }

    /// The client credential grant.
    async fn fetch(&self, clients: &Clients, resolved: &Resolved) -> Result<Token, Outcome> {
        let Ok(url) = reqwest::Url::parse(&self.token_url) else {
            return Err(Outcome::Dead {
                reason: format!("{TOKEN_FAILED}: the token endpoint is not a valid URL"),
                status: 0,
                body: String::new(),
            });
        };
        let body = tokens::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &self.client_id),
            ("client_secret", &self.client_secret),
            ("scope", SCOPE),
        ]);
        let headers = [
            (
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("Accept".to_owned(), "application/json".to_owned()),
        ];
        let answer = clients
            .http
            .call(reqwest::Method::POST, url, &headers, Some(body), resolved)
            .await?;
        if (200..300).contains(&answer.status) {
            return tokens::oauth2_token(&answer, TOKEN_FAILED);
        }
        let masker = masker(resolved, &[&self.client_secret]);
        let outcome = classify::classify(&answer, Judge::Status, &masker, TOKEN_FAILED);
        Err(explained(outcome, entra_error(&answer, &masker)))
    }
}

/// What is masked in the texts kept of an exchange: the Provider's secrets
/// and the credential in use.
fn masker(resolved: &Resolved, extra: &[&str]) -> Masker {
    Masker::new(resolved.secrets().into_iter().chain(extra.iter().copied()))
}

/// `outcome` with the service's own words appended to its reason.
fn explained(mut outcome: Outcome, detail: Option<String>) -> Outcome {
    let Some(detail) = detail.filter(|d| !d.is_empty()) else {
        return outcome;
    };
    if let Outcome::Retry { reason, .. } | Outcome::Dead { reason, .. } = &mut outcome {
        reason.push_str(": ");
        reason.push_str(&detail);
    }
    outcome
}

/// The `<Detail>` (else `<Code>`) of a Service Bus error body, masked.
fn service_bus_error(body: &[u8], masker: &Masker) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(xml_unescape(text[start..end].trim()))
    };
    element("Detail")
        .or_else(|| element("Code"))
        .filter(|t| !t.is_empty())
        .map(|t| masker.mask(&t))
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Entra ID's `error: error_description` (its first line; the rest is trace
/// ids), masked.
fn entra_error(answer: &Answer, masker: &Masker) -> Option<String> {
    let body: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
    let error = body["error"].as_str()?;
    let text = match body["error_description"]
        .as_str()
        .and_then(|d| d.lines().next())
    {
        Some(description) if !description.trim().is_empty() => {
            format!("{error}: {}", description.trim())
        }
        _ => error.to_owned(),
    };
    Some(masker.mask(&text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_flux::objects::SecretData;

    const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM9PQ==";
    const CONNECTION: &str = "Endpoint=sb://my-namespace.servicebus.windows.net/;SharedAccessKeyName=send-only;SharedAccessKey=c2VjcmV0LWtleS1mb3ItdGVzdHM9PQ==;EntityPath=flux-events";

    fn event() -> FluxEvent {
        FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"apps"},
                "severity":"error","timestamp":"2024-01-01T10:00:00Z","message":"a<b",
                "reason":"BuildFailed","reportingController":"kustomize-controller"}"#,
        )
        .unwrap()
    }

    fn resolved(address: &str, channel: &str, secret: &[(&str, &str)]) -> Resolved {
        let mut data = SecretData::default();
        for (k, v) in secret {
            data.insert((*k).to_owned(), v.as_bytes().to_vec());
        }
        Resolved {
            provider_type: WHAT.into(),
            address: address.into(),
            channel: channel.into(),
            token: secret
                .iter()
                .find(|(k, _)| *k == "token")
                .map(|(_, v)| (*v).to_owned())
                .unwrap_or_default(),
            secret: crate::config::secret_holding(data),
            ..Resolved::default()
        }
    }

    fn error(resolved: &Resolved) -> String {
        plan(resolved, &event()).err().unwrap().to_string()
    }

    #[test]
    fn the_sas_token_matches_an_independently_computed_one() {
        // Computed with Python's hmac, hashlib, base64 and
        // urllib.parse.quote_plus, following Microsoft's documented steps.
        assert_eq!(
            sas_token(
                "https://my-namespace.servicebus.windows.net/flux-events",
                "send-only",
                KEY,
                1_700_000_000
            ),
            concat!(
                "SharedAccessSignature sr=https%3A%2F%2Fmy-namespace.servicebus.windows.net%2Fflux-events",
                "&sig=IGSjlci49pprYD89sFlXudOqDTRpVkGKYuyDcSmGfhw%3D&se=1700000000&skn=send-only"
            )
        );
    }

    #[test]
    fn a_connection_string_gives_the_hub_url_and_a_sas_credential() {
        let send = plan(&resolved(CONNECTION, "", &[]), &event()).unwrap();
        assert_eq!(
            send.url.as_str(),
            "https://my-namespace.servicebus.windows.net/flux-events/messages?timeout=60&api-version=2014-01"
        );
        assert_eq!(send.body, event().to_go_json());
        let Auth::Sas(sas) = &send.auth else {
            panic!("SAS")
        };
        assert_eq!(
            sas.resource,
            "https://my-namespace.servicebus.windows.net/flux-events"
        );
        assert_eq!(
            (sas.key_name.as_str(), sas.key.as_str()),
            ("send-only", KEY)
        );
        // Keys in any case and order; the emulator switch speaks http.
        let emulator = "sharedaccesskey=k=;ENDPOINT=sb://127.0.0.1:5672;SharedAccessKeyName=n;EntityPath=hub;UseDevelopmentEmulator=true;";
        let send = plan(&resolved(emulator, "", &[]), &event()).unwrap();
        assert_eq!(
            send.url.as_str(),
            "http://127.0.0.1:5672/hub/messages?timeout=60&api-version=2014-01"
        );
        let Auth::Sas(sas) = &send.auth else {
            panic!("SAS")
        };
        assert_eq!(sas.key, "k=");
        assert_eq!(sas.resource, "https://127.0.0.1:5672/hub");
    }

    #[test]
    fn connection_string_problems_are_named_without_the_key() {
        let cases = [
            (
                "SharedAccessKeyName=n;SharedAccessKey=s3cr3t-key;EntityPath=h",
                "has no Endpoint",
            ),
            (
                "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=s3cr3t-key;EntityPath=h",
                "has no SharedAccessKeyName",
            ),
            (
                "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=n;SharedAccessKey=s3cr3t-key",
                "has no EntityPath",
            ),
            (
                "Endpoint=ns;SharedAccessKeyName=n;SharedAccessKey=s3cr3t-key;EntityPath=h",
                "Endpoint is not a URL",
            ),
            (
                "Endpoint=sb://ns/;SharedAccessKeyName=n;SharedAccessKey=s3cr3t-key;junk",
                "malformed",
            ),
        ];
        for (address, expected) in cases {
            let text = error(&resolved(address, "", &[]));
            assert!(text.contains(expected), "{text}");
            assert!(!text.contains("s3cr3t"), "{text}");
        }
    }

    #[test]
    fn a_token_or_client_credential_with_a_connection_string_is_refused_as_flux_does() {
        let text = error(&resolved(CONNECTION, "", &[("token", "jwt-token")]));
        assert_eq!(
            text,
            "azureeventhub: invalid authentication options: jwt token and SAS authentication cannot be set at the same time"
        );
        let text = error(&resolved(CONNECTION, "", &[(CLIENT_SECRET, "cs")]));
        assert!(text.contains("cannot be set at the same time"), "{text}");
        assert!(!text.contains(KEY), "{text}");
    }

    #[test]
    fn the_namespace_gets_its_clouds_domain_unless_it_has_one() {
        let public = DEFAULT_AUTHORITY;
        assert_eq!(
            namespace_host("ns", public).unwrap(),
            "ns.servicebus.windows.net"
        );
        assert_eq!(
            namespace_host("sb://ns.servicebus.windows.net/", public).unwrap(),
            "ns.servicebus.windows.net"
        );
        assert_eq!(
            namespace_host("ns.servicebus.chinacloudapi.cn", public).unwrap(),
            "ns.servicebus.chinacloudapi.cn"
        );
        assert_eq!(
            namespace_host("ns", "https://login.chinacloudapi.cn/").unwrap(),
            "ns.servicebus.chinacloudapi.cn"
        );
        assert_eq!(
            namespace_host("ns", "https://login.microsoftonline.us/").unwrap(),
            "ns.servicebus.usgovcloudapi.net"
        );
        assert_eq!(namespace_host(" ", public), None);
    }

    #[test]
    fn a_static_token_is_a_bearer_token_and_the_endpoint_annotation_replaces_the_namespace() {
        let r = resolved("flux-events", "ns", &[("token", "jwt-token\n")]);
        let send = plan(&r, &event()).unwrap();
        assert_eq!(
            send.url.as_str(),
            "https://ns.servicebus.windows.net/flux-events/messages?timeout=60&api-version=2014-01"
        );
        assert!(matches!(&send.auth, Auth::Token(t) if t == "jwt-token"));
        let mut private = r.clone();
        private.endpoint = "http://127.0.0.1:8080/eventhubs/".into();
        let send = plan(&private, &event()).unwrap();
        assert_eq!(
            send.url.as_str(),
            "http://127.0.0.1:8080/eventhubs/flux-events/messages?timeout=60&api-version=2014-01"
        );
        private.endpoint = "ftp://example".into();
        assert!(error(&private).contains("herald.dev/endpoint annotation"));
    }

    #[test]
    fn a_client_credential_asks_its_authority_for_an_event_hubs_token() {
        let keys = [
            (TENANT_ID, "contoso.onmicrosoft.com"),
            (CLIENT_ID, "00000000-0000-0000-0000-000000000001"),
            (CLIENT_SECRET, "client-secret-value"),
        ];
        let send = plan(&resolved("flux-events", "ns", &keys), &event()).unwrap();
        let Auth::Entra(credential) = &send.auth else {
            panic!("Entra")
        };
        assert_eq!(
            credential.token_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        let mut sovereign = keys.to_vec();
        sovereign.push((AUTHORITY_HOST, "https://login.chinacloudapi.cn"));
        let send = plan(&resolved("flux-events", "ns", &sovereign), &event()).unwrap();
        assert_eq!(send.url.host_str(), Some("ns.servicebus.chinacloudapi.cn"));
        let Auth::Entra(other) = &send.auth else {
            panic!("Entra")
        };
        assert_eq!(
            other.token_url,
            "https://login.chinacloudapi.cn/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_ne!(credential.key, other.key);
    }

    #[test]
    fn missing_or_contradictory_settings_are_named_without_secrets() {
        // (address, channel, Secret, expected words)
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case<'_>; 8] = [
            (
                "hub",
                "my ns",
                &[("token", "t0k3n-value")],
                "gives no valid URL",
            ),
            ("", "ns", &[("token", "t0k3n-value")], "no address"),
            (
                "https://ns.servicebus.windows.net/hub",
                "ns",
                &[("token", "t0k3n-value")],
                "must be the event hub name",
            ),
            ("hub", "", &[("token", "t0k3n-value")], "no namespace"),
            ("hub", "ns", &[], "no credential"),
            (
                "hub",
                "ns",
                &[("token", "t0k3n-value"), (CLIENT_ID, "id")],
                "jwt token and client credential",
            ),
            (
                "hub",
                "ns",
                &[(TENANT_ID, "t"), (CLIENT_SECRET, "cl13nt-secret")],
                "missing: clientId",
            ),
            (
                "hub",
                "ns",
                &[
                    (TENANT_ID, "t"),
                    (CLIENT_ID, "id"),
                    (CLIENT_SECRET, "cl13nt-secret"),
                    (AUTHORITY_HOST, "login.example"),
                ],
                "authorityHost",
            ),
        ];
        for (address, channel, secret, expected) in cases {
            let text = error(&resolved(address, channel, secret));
            assert!(text.starts_with("azureeventhub: "), "{text}");
            assert!(text.contains(expected), "{text} lacks {expected}");
            assert!(
                !text.contains("t0k3n") && !text.contains("cl13nt"),
                "{text}"
            );
        }
    }

    #[test]
    fn service_errors_give_their_own_words_masked() {
        let masker = Masker::new(["s3cr3t-value"]);
        let body = b"<Error><Code>401</Code><Detail>InvalidSignature: The token has an invalid signature &amp; s3cr3t-value. TrackingId:1</Detail></Error>";
        assert_eq!(
            service_bus_error(body, &masker).unwrap(),
            "InvalidSignature: The token has an invalid signature & *****. TrackingId:1"
        );
        assert_eq!(
            service_bus_error(b"<Error><Code>500</Code></Error>", &masker).unwrap(),
            "500"
        );
        assert_eq!(service_bus_error(b"fake answer 503", &masker), None);
        let answer = Answer {
            status: 401,
            headers: reqwest::header::HeaderMap::new(),
            body: bytes::Bytes::from_static(
                br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x","error_codes":[7000215]}"#,
            ),
        };
        assert_eq!(
            entra_error(&answer, &masker).unwrap(),
            "invalid_client: AADSTS7000215: Invalid client secret provided."
        );
        let outcome = explained(
            Outcome::Dead {
                reason: "r".into(),
                status: 401,
                body: String::new(),
            },
            Some("why".into()),
        );
        assert!(matches!(outcome, Outcome::Dead { reason, .. } if reason == "r: why"));
    }
}
