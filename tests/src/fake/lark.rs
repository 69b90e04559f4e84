//! A fake Lark custom bot: `POST /open-apis/bot/v2/hook/<HOOK>` with a JSON
//! `msg_type` and its content (`content` for text and posts, `card` for
//! interactive cards). Lark answers `200` whatever happened, with
//! `{"code", "data", "msg"}`: `0` and `success` when posted, `9499` for a
//! malformed request, `19001` for an unknown hook; its rate limit is code
//! `11232`, also with `200` and no `Retry-After`.

use std::time::Duration;

use serde_json::json;

use super::{Api, FakeServer, Recorded, Reply};

/// The hook the fake knows: its path is `/open-apis/bot/v2/hook/<HOOK>`.
pub const HOOK: &str = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";

/// A Lark custom bot.
#[derive(Debug)]
pub struct Lark;

fn answer(code: u32, msg: &str) -> Reply {
    Reply::json(200, &json!({"code": code, "data": {}, "msg": msg}))
}

impl Api for Lark {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        let Some(hook) = request.path.strip_prefix("/open-apis/bot/v2/hook/") else {
            return Reply::text(404, "404 page not found");
        };
        if request.method != "POST" {
            return Reply::text(404, "404 page not found");
        }
        if hook != HOOK {
            return answer(
                19001,
                "param invalid: incoming webhook access token invalid",
            );
        }
        let Some(body) = request.try_json().filter(|_| request.is_json()) else {
            return answer(9499, "Bad Request");
        };
        let ok = match body["msg_type"].as_str() {
            Some("interactive") => body["card"]["elements"].is_array(),
            Some("text" | "post" | "share_chat" | "image") => body["content"].is_object(),
            _ => false,
        };
        if !ok {
            return answer(9499, "Bad Request");
        }
        Reply::json(
            200,
            &json!({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}),
        )
    }

    fn rate_limited(&mut self, _request: &Recorded, _retry_after: Duration) -> Reply {
        answer(
            11232,
            "frequency limited psm[lark.oapi.app_platform_runtime]appID[1500]",
        )
    }
}

impl FakeServer {
    /// A fake Lark custom bot on a free loopback port, for [`HOOK`].
    pub async fn lark() -> Self {
        Self::start(Lark).await
    }
}
