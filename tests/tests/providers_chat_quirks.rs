//! What the chat table does not show: a Telegram bot token, which travels
//! in the URL path, never reaches a dead letter, even when the API echoes
//! the path back; a retried Matrix delivery PUTs the same transaction id,
//! so the room gets one message.

use herald_tests::eventually;
use herald_tests::fake::matrix::{self, Matrix};
use herald_tests::fake::{Fake, FakeServer, Reply, telegram};
use herald_tests::fixtures::{Alert, Event, Provider, Secret, dead_letters, deliveries_drained};
use herald_tests::herald::{TestHerald, config_dir};
use herald_tests::nats::TestNats;
use prost::Message as _;

const NAMESPACE: &str = "flux-system";

#[tokio::test]
async fn a_failed_telegram_delivery_keeps_no_token_in_its_dead_letter() {
    let nats = TestNats::start().await;
    let fake = FakeServer::telegram().await;
    let manifests = format!(
        "{}{}{}",
        Secret::new(NAMESPACE, "telegram").data("token", telegram::TOKEN),
        Provider::new(NAMESPACE, "telegram", "telegram")
            .channel("-1000")
            .address(&fake.url(""))
            .secret_ref("telegram"),
        Alert::new(NAMESPACE, "all", "telegram").source("Kustomization", "*"),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    // An unknown chat: Telegram's 400, dead at once.
    let event = Event::new("Kustomization", NAMESPACE, "webapp").severity("error");
    assert_eq!(herald.post(event.clone().message("first")).await.0, 202);
    fake.wait_for(1).await;
    // An answer that quotes the request path, token and all.
    fake.script([Reply::json(
        400,
        &serde_json::json!({
            "ok": false,
            "error_code": 400,
            "description": format!("Bad Request: no chat for {}", telegram::SEND_MESSAGE),
        }),
    )]);
    assert_eq!(herald.post(event.message("second")).await.0, 202);

    let letters = eventually("two dead letters", || async {
        let letters = dead_letters(&nats).await;
        (letters.len() == 2).then_some(letters)
    })
    .await;
    let reasons: Vec<&str> = letters.iter().map(|(_, l)| l.reason.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("Bad Request: chat not found")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("Bad Request: no chat for")),
        "{reasons:?}"
    );
    let secret_half = telegram::TOKEN.split_once(':').expect("id:secret").1;
    for (subject, letter) in &letters {
        assert_eq!(letter.last_status, 400, "{subject}");
        let bytes = letter.encode_to_vec();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(secret_half),
            "{subject}: the token is in the dead letter: {letter:?}"
        );
    }
    herald.shutdown().await;
}

#[tokio::test]
async fn a_retried_matrix_delivery_reuses_its_transaction_id() {
    let nats = TestNats::start().await;
    let fake = Fake::<Matrix>::matrix().await;
    let manifests = format!(
        "{}{}{}",
        Secret::new(NAMESPACE, "matrix").data("token", matrix::TOKEN),
        Provider::new(NAMESPACE, "matrix", "matrix")
            .channel(matrix::ROOM)
            .address(&fake.url(""))
            .secret_ref("matrix"),
        Alert::new(NAMESPACE, "all", "matrix").source("Kustomization", "*"),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    // The homeserver fails twice, then posts.
    fake.script([Reply::status(502), Reply::status(503)]);
    let event = Event::new("Kustomization", NAMESPACE, "webapp").message("retried");
    assert_eq!(herald.post(event).await.0, 202);
    let requests = fake.wait_for(3).await;
    deliveries_drained(&nats).await;
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths.len(), 3, "{paths:?}");
    assert!(paths.iter().all(|p| *p == paths[0]), "{paths:?}");
    assert_eq!(
        requests.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [502, 503, 200]
    );
    assert_eq!(fake.api(|m| m.messages()), 1);
    herald.shutdown().await;
}
