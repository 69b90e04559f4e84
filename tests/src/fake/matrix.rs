//! A fake Matrix homeserver: the client-server API's
//! `PUT /_matrix/client/r0/rooms/{roomId}/send/m.room.message/{txnId}` for
//! the access token [`TOKEN`] (a bearer header) in the room [`ROOM`]. It
//! keeps the transaction ids it has seen, as a homeserver does for one
//! access token: a repeated id gets the event id it already answered, and
//! no second message ([`Matrix::messages`] counts them). Errors are
//! Matrix's `{"errcode", "error"}` (`M_MISSING_TOKEN` / `M_UNKNOWN_TOKEN`
//! 401, `M_FORBIDDEN` 403 outside the room, `M_NOT_JSON` / `M_BAD_JSON`
//! 400, `M_UNRECOGNIZED` 404/405). When it rate-limits it answers 429
//! `M_LIMIT_EXCEEDED` with the wait in `retry_after_ms` and no header, as
//! servers of the r0 API Flux calls do.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::{Api, Fake, FakeServer, Recorded, Reply};

/// The access token the fake accepts.
pub const TOKEN: &str = "syt_Zmx1eA_fake_token";
/// The room the token's user has joined.
pub const ROOM: &str = "!ZDjRYYbZLvBLLbHwWp:matrix.example.org";

/// A homeserver: the messages posted, by transaction id.
#[derive(Debug, Default)]
pub struct Matrix {
    /// Transaction id → event id.
    transactions: BTreeMap<String, String>,
}

// === impl Matrix ===

impl Matrix {
    /// How many messages were posted (repeated transactions excluded).
    #[must_use]
    pub fn messages(&self) -> usize {
        self.transactions.len()
    }
}

fn error(status: u16, errcode: &str, message: &str) -> Reply {
    Reply::json(status, &json!({"errcode": errcode, "error": message}))
}

impl Api for Matrix {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        let segments = request.segments();
        let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
        let [
            "_matrix",
            "client",
            "r0",
            "rooms",
            room,
            "send",
            event_type,
            txn,
        ] = parts[..]
        else {
            return error(404, "M_UNRECOGNIZED", "Unrecognized request");
        };
        if request.method != "PUT" {
            return error(405, "M_UNRECOGNIZED", "Unrecognized request");
        }
        let token = request
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer ").map(str::to_owned))
            .or_else(|| request.query_value("access_token"));
        match token.as_deref() {
            None | Some("") => {
                return error(401, "M_MISSING_TOKEN", "Missing access token");
            }
            Some(TOKEN) => {}
            Some(_) => {
                return error(401, "M_UNKNOWN_TOKEN", "Invalid access token passed.");
            }
        }
        if room != ROOM {
            return error(
                403,
                "M_FORBIDDEN",
                &format!("User @flux:matrix.example.org not in room {room}"),
            );
        }
        let Some(body) = request.try_json() else {
            return error(400, "M_NOT_JSON", "Content not JSON.");
        };
        if event_type != "m.room.message"
            || body["msgtype"] != "m.text"
            || !body["body"].is_string()
        {
            return error(400, "M_BAD_JSON", "Invalid m.room.message content");
        }
        let next = format!("$event{}", self.transactions.len() + 1);
        let event_id = self
            .transactions
            .entry(txn.to_owned())
            .or_insert(next)
            .clone();
        Reply::json(200, &json!({"event_id": event_id}))
    }

    fn rate_limited(&mut self, _request: &Recorded, retry_after: Duration) -> Reply {
        Reply::json(
            429,
            &json!({
                "errcode": "M_LIMIT_EXCEEDED",
                "error": "Too Many Requests",
                "retry_after_ms": retry_after.as_millis(),
            }),
        )
    }
}

impl FakeServer {
    /// A fake Matrix homeserver on a free loopback port.
    pub async fn matrix() -> Self {
        Self::start(Matrix::default()).await
    }
}

impl Fake<Matrix> {
    /// A fake Matrix homeserver whose messages tests count.
    pub async fn matrix() -> Self {
        Self::start_api(Matrix::default()).await
    }
}
