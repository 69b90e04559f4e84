//! A webhook receiver (`generic`, `generic-hmac` and any type that posts
//! JSON to an address): `200` to every POST with a JSON body, `400` to any
//! other body, `405` to any other method. With a key, it also checks
//! `X-Signature: sha256=<hex HMAC-SHA256 of the body>` as a receiver of
//! Flux's `generic-hmac` does, and answers `401` when it does not match.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Api, FakeServer, Recorded, Reply};

/// Any webhook.
#[derive(Debug, Default)]
pub struct Webhook {
    /// The HMAC key signatures are checked with, if any.
    key: Option<String>,
}

impl Api for Webhook {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        if request.method != "POST" {
            return Reply::status(405);
        }
        if let Some(key) = &self.key {
            let expected = format!("sha256={}", signature(key, &request.body));
            if request.header("x-signature") != Some(expected) {
                return Reply::text(401, "invalid signature");
            }
        }
        Reply::status(if request.try_json().is_some() {
            200
        } else {
            400
        })
    }
}

/// The hex HMAC-SHA256 of `body` under `key`.
///
/// # Panics
///
/// Never: HMAC takes a key of any length.
#[must_use]
pub fn signature(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

impl FakeServer {
    /// A webhook receiver on a free loopback port.
    pub async fn webhook() -> Self {
        Self::start(Webhook::default()).await
    }

    /// A webhook receiver that checks `X-Signature` against `key`.
    pub async fn webhook_hmac(key: &str) -> Self {
        Self::start(Webhook {
            key: Some(key.to_owned()),
        })
        .await
    }
}
