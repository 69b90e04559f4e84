//! A fake Azure Event Hubs namespace with one event hub, [`HUB`], spoken
//! to with the REST "Send event" call:
//! `POST /{HUB}/messages?timeout=60&api-version=2014-01` with
//! `Content-Type: application/atom+xml;type=entry;charset=utf-8` and the
//! event as the body, answered `201 Created` with an empty body.
//!
//! Auth as the service checks it: a SAS token
//! (`SharedAccessSignature sr=…&sig=…&se=…&skn=…`) signed with [`KEY`] of
//! the policy [`KEY_NAME`] (the HMAC-SHA256 of the still-encoded `sr`, a
//! newline and `se`), not expired, for this namespace or this hub; or a
//! bearer token that is [`STATIC_TOKEN`] or one the fake Entra ID issued
//! and has not revoked ([`super::entra::Issued`]).
//!
//! Errors are Service Bus XML, `<Error><Code>{status}</Code><Detail>…
//! TrackingId:…, SystemTracker:…, Timestamp:…</Detail></Error>`: `401`
//! for a bad or expired token, `404` for another entity, `400` for a
//! missing api-version or another content type. Microsoft's REST reference
//! names no throttling status for "Send event"; the SDKs call it
//! ServerBusy (error code 50002, "wait at least 4 seconds"), so when it
//! rate-limits this fake answers `503` with that detail and `Retry-After`.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::entra::Issued;
use super::{Api, Fake, Recorded, Reply, percent_decode};

/// The event hub's name.
pub const HUB: &str = "flux-events";
/// The shared access policy's name.
pub const KEY_NAME: &str = "flux-send";
/// The policy's primary key.
pub const KEY: &str = "bWFkZS11cC1rZXktZm9yLWhlcmFsZC10ZXN0cy0wMDA=";
/// The static JWT the namespace accepts (Flux's deprecated `token`).
pub const STATIC_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.static-flux-token.c2ln";
/// The content type the REST API documents.
pub const CONTENT_TYPE: &str = "application/atom+xml;type=entry;charset=utf-8";

/// An Event Hubs namespace and the events its hub accepted.
#[derive(Debug)]
pub struct EventHubs {
    entra: Issued,
    events: Vec<String>,
}

/// A fake Event Hubs namespace.
pub type FakeEventHubs = Fake<EventHubs>;

/// Service Bus's XML error.
fn error(status: u16, detail: &str, host: &str) -> Reply {
    let timestamp = jiff::Timestamp::now().strftime("%m/%d/%Y %I:%M:%S %p");
    Reply::text(
        status,
        &format!(
            "<Error><Code>{status}</Code><Detail>{detail} TrackingId:5a1e7c3b-0000-4000-8000-eb0000000001_G7, SystemTracker:{host}:eventhub:{HUB}, Timestamp:{timestamp}</Detail></Error>"
        ),
    )
    .header("content-type", "application/xml; charset=utf-8")
}

impl Api for EventHubs {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        let host = request.header("host").unwrap_or_default();
        if request.path != format!("/{HUB}/messages") {
            let entity = request
                .path
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or_default();
            return error(
                404,
                &format!(
                    "The messaging entity 'sb://{host}/{entity}' could not be found. To know more visit https://aka.ms/sbResourceMgrExceptions."
                ),
                &host,
            );
        }
        if request.method != "POST" {
            return error(
                405,
                "The requested HTTP verb is not allowed on this resource.",
                &host,
            );
        }
        if let Err(detail) = self.authorize(request, &host) {
            return error(401, &detail, &host);
        }
        if request.query_value("api-version").as_deref() != Some("2014-01") {
            return error(
                400,
                "The api-version in the query string is missing or not supported.",
                &host,
            );
        }
        let content_type = request
            .header("content-type")
            .unwrap_or_default()
            .replace(' ', "")
            .to_ascii_lowercase();
        if content_type != CONTENT_TYPE {
            return error(
                400,
                "The Content-Type must be application/atom+xml;type=entry;charset=utf-8.",
                &host,
            );
        }
        if request.body.is_empty() {
            return error(400, "The request body is empty.", &host);
        }
        self.events.push(request.text());
        Reply::empty(201).header("content-type", "application/xml; charset=utf-8")
    }

    fn rate_limited(&mut self, request: &Recorded, retry_after: Duration) -> Reply {
        let host = request.header("host").unwrap_or_default();
        error(
            503,
            &format!(
                "SubCode=50002. The request was terminated because the namespace is being throttled. Please wait {} seconds and try again.",
                retry_after.as_secs()
            ),
            &host,
        )
        .header("retry-after", &retry_after.as_secs().to_string())
    }
}

// === impl EventHubs ===

impl EventHubs {
    /// Checks the `Authorization` header; the detail of the 401 otherwise.
    fn authorize(&self, request: &Recorded, host: &str) -> Result<(), String> {
        let Some(authorization) = request.header("authorization") else {
            return Err("MissingToken: The authorization header was not found.".to_owned());
        };
        if let Some(token) = authorization.strip_prefix("Bearer ") {
            return if token == STATIC_TOKEN || self.entra.accepts(token) {
                Ok(())
            } else {
                Err("ExpiredToken: The provided token is not valid or has expired.".to_owned())
            };
        }
        let Some(sas) = authorization.strip_prefix("SharedAccessSignature ") else {
            return Err(
                "MalformedToken: The credentials contained in the authorization header are not in the expected format.".to_owned(),
            );
        };
        check_sas(sas, host)
    }
}

/// Checks a SAS token's fields, signature, expiry and audience.
fn check_sas(sas: &str, host: &str) -> Result<(), String> {
    let field = |name: &str| {
        sas.split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_owned)
    };
    let (Some(sr), Some(sig), Some(se), Some(skn)) =
        (field("sr"), field("sig"), field("se"), field("skn"))
    else {
        return Err("MalformedToken: The token must hold sr, sig, se and skn.".to_owned());
    };
    if percent_decode(&skn) != KEY_NAME {
        return Err("InvalidSignature: The token has an invalid signature.".to_owned());
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).expect("any key length");
    mac.update(format!("{sr}\n{se}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if percent_decode(&sig) != expected {
        return Err("InvalidSignature: The token has an invalid signature.".to_owned());
    }
    let Ok(expiry) = se.parse::<i64>() else {
        return Err("MalformedToken: The token expiry is not a number.".to_owned());
    };
    if expiry < jiff::Timestamp::now().as_second() {
        return Err(format!(
            "ExpiredToken: The token is expired. Expiration time: '{se}'."
        ));
    }
    let resource = percent_decode(&sr).to_ascii_lowercase();
    let resource = ["https://", "http://", "sb://", "amqps://"]
        .iter()
        .find_map(|scheme| resource.strip_prefix(scheme))
        .unwrap_or(&resource)
        .trim_end_matches('/')
        .to_owned();
    let host = host.to_ascii_lowercase();
    if resource != host && resource != format!("{host}/{HUB}") {
        return Err(format!(
            "InvalidAudience: The token audience '{resource}' is not valid for this entity."
        ));
    }
    Ok(())
}

impl FakeEventHubs {
    /// Starts the namespace on a free loopback port, accepting the bearer
    /// tokens `entra` issued (and [`STATIC_TOKEN`]).
    pub async fn start(entra: Issued) -> Self {
        Self::start_api(EventHubs {
            entra,
            events: Vec::new(),
        })
        .await
    }

    /// The bodies of the events the hub accepted, oldest first.
    #[must_use]
    pub fn events(&self) -> Vec<String> {
        self.api(|hubs| hubs.events.clone())
    }

    /// The SAS connection string of the policy, with `key`, pointing at the
    /// fake through the SDKs' development-emulator switch (plain http).
    #[must_use]
    pub fn connection_string(&self, key: &str) -> String {
        let endpoint = self.url("/").replacen("http://", "sb://", 1);
        format!(
            "Endpoint={endpoint};SharedAccessKeyName={KEY_NAME};SharedAccessKey={key};EntityPath={HUB};UseDevelopmentEmulator=true"
        )
    }
}
