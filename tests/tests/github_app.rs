//! GitHub App authentication for the GitHub types, end to end against the
//! fake GitHub, which checks each App JWT with the App's public key: the
//! installation token is got once and reused, fetched anew when GitHub
//! refuses it, found by owner (organization, then user), and a Secret GitHub
//! will not accept is a dead letter that says why, without the key.

use herald_tests::fake::github::{
    APP_ID, APP_ORG, APP_PRIVATE_KEY, APP_SLUG, APP_USER, FakeGitHub, INSTALLATION_ID,
};
use herald_tests::fake::{FakeServer, Reply};
use herald_tests::fixtures::{Alert, Event, Provider, dead_letters};
use herald_tests::herald::{TestHerald, config_dir};
use herald_tests::nats::TestNats;

const SHA: &str = "67e2c98a60dc92283531412a9e604dd4bae005a9";
const NS: &str = "flux-system";

/// A Secret of App keys, the private key as a block scalar.
fn app_secret(name: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {NS}}}\nstringData:\n"
    );
    for (key, value) in pairs {
        out.push_str(&format!("  {key}: '{value}'\n"));
    }
    out.push_str("  githubAppPrivateKey: |\n");
    for line in APP_PRIVATE_KEY.lines() {
        out.push_str(&format!("    {line}\n"));
    }
    out.push_str("---\n");
    out
}

/// An event about `main@sha1:SHA`: a commit-status update when `status`,
/// else one about change request 7.
fn event_of(severity: &str, reason: &str, at: &str, status: bool) -> String {
    let event = Event::new("Kustomization", NS, "apps")
        .severity(severity)
        .reason(reason)
        .message(&format!("{reason} at {at}"))
        .timestamp(at)
        .metadata(
            "kustomize.toolkit.fluxcd.io/revision",
            &format!("main@sha1:{SHA}"),
        );
    if status {
        event.metadata("kustomize.toolkit.fluxcd.io/commit_status", "update")
    } else {
        event.metadata("event.toolkit.fluxcd.io/change_request", "7")
    }
    .json()
}

fn event(severity: &str, reason: &str, at: &str) -> String {
    event_of(severity, reason, at, true)
}

fn pr_event(severity: &str, reason: &str, at: &str) -> String {
    event_of(severity, reason, at, false)
}

fn manifests(github: &FakeServer, provider_type: &str, secret: &str) -> String {
    format!(
        "{}{}{secret}",
        Provider::new(NS, "gh", provider_type)
            .address(&github.url("/org/podinfo"))
            .secret_ref("gh-app"),
        Alert::new(NS, "all", "gh").source("Kustomization", "*"),
    )
}

fn token_posts(github: &FakeServer) -> usize {
    github
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/access_tokens"))
        .count()
}

#[tokio::test]
async fn commit_statuses_are_written_as_the_app_and_its_token_renewed_when_refused() {
    let nats = TestNats::start().await;
    let github = FakeGitHub::start().await;
    let secret = app_secret(
        "gh-app",
        &[
            ("githubAppID", APP_ID),
            ("githubAppInstallationID", &INSTALLATION_ID.to_string()),
        ],
    );
    let dir = config_dir(&manifests(&github.server(), "github", &secret));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let server = github.server();
    let states = || -> Vec<String> {
        github
            .statuses("org/podinfo", SHA)
            .iter()
            .map(|s| s["state"].as_str().unwrap_or_default().to_owned())
            .collect()
    };

    // First status: the App's JWT is exchanged for a token, the status written with it.
    assert_eq!(
        herald
            .post(event(
                "info",
                "ReconciliationSucceeded",
                "2024-01-01T10:00:00Z"
            ))
            .await
            .0,
        202
    );
    herald_tests::eventually("green", || async { (states().len() == 1).then_some(()) }).await;
    let requests = server.requests();
    let grant = requests
        .iter()
        .find(|r| r.path.ends_with("/access_tokens"))
        .expect("a token request");
    assert_eq!(
        grant.path,
        format!("/api/v3/app/installations/{INSTALLATION_ID}/access_tokens")
    );
    assert_eq!(grant.method, "POST");
    let write = requests
        .iter()
        .find(|r| r.path.contains("/statuses/"))
        .unwrap();
    assert_eq!(
        write.header("authorization").as_deref(),
        Some("Bearer ghs_fake0001")
    );

    // Second status: the cached token, no new grant.
    assert_eq!(
        herald
            .post(event("error", "BuildFailed", "2024-01-01T10:05:00Z"))
            .await
            .0,
        202
    );
    herald_tests::eventually("red", || async { (states().len() == 2).then_some(()) }).await;
    assert_eq!(github.installation_tokens_granted(), 1);

    // GitHub revokes the token: the 401 makes the sender get a new one and write.
    github.revoke_installation_tokens();
    assert_eq!(
        herald
            .post(event(
                "info",
                "ReconciliationSucceeded",
                "2024-01-01T10:10:00Z"
            ))
            .await
            .0,
        202
    );
    herald_tests::eventually("green again", || async {
        (states().len() == 3).then_some(())
    })
    .await;
    assert_eq!(github.installation_tokens_granted(), 2);
    assert_eq!(states()[0], "success");
    assert!(dead_letters(&nats).await.is_empty());
}

#[tokio::test]
async fn dispatches_find_the_installation_by_organization_and_comments_are_by_the_apps_bot() {
    let nats = TestNats::start().await;
    let github = FakeGitHub::start().await;
    let server = github.server();
    let org_secret = app_secret(
        "gh-app",
        &[
            ("githubAppID", APP_ID),
            ("githubAppInstallationOwner", APP_ORG),
        ],
    );
    let user_secret = app_secret(
        "gh-app-user",
        &[
            ("githubAppID", APP_ID),
            ("githubAppInstallationOwner", APP_USER),
        ],
    );
    let manifests = format!(
        "{}{}{}{}{org_secret}{user_secret}",
        Provider::new(NS, "dispatch", "githubdispatch")
            .address(&server.url("/org/podinfo"))
            .secret_ref("gh-app"),
        Alert::new(NS, "dispatch", "dispatch").source("Kustomization", "*"),
        Provider::new(NS, "comment", "githubpullrequestcomment")
            .address(&server.url("/org/podinfo"))
            .secret_ref("gh-app-user"),
        Alert::new(NS, "comment", "comment").source("Kustomization", "*"),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    // The token endpoint fails once: the delivery is retried and made.
    server.script([Reply::json(
        500,
        &serde_json::json!({"message": "Server Error"}),
    )]);

    assert_eq!(
        herald
            .post(pr_event("error", "BuildFailed", "2024-01-01T10:00:00Z"))
            .await
            .0,
        202
    );
    herald_tests::eventually("dispatched and commented", || async {
        let dispatched = server
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/dispatches") && r.answered == 204);
        let commented = github.comments("org/podinfo", 7).len() == 1;
        (dispatched && commented).then_some(())
    })
    .await;
    let requests = server.requests();
    // The organization's installation was found directly; the user's after the org lookup's 404.
    assert!(
        requests
            .iter()
            .any(|r| r.path == format!("/api/v3/orgs/{APP_ORG}/installation") && r.answered == 200)
    );
    assert!(
        requests.iter().any(
            |r| r.path == format!("/api/v3/orgs/{APP_USER}/installation") && r.answered == 404
        )
    );
    assert!(
        requests.iter().any(
            |r| r.path == format!("/api/v3/users/{APP_USER}/installation") && r.answered == 200
        )
    );
    let comments = github.comments("org/podinfo", 7);
    assert_eq!(comments[0]["user"]["login"], format!("{APP_SLUG}[bot]"));

    // A second event edits the bot's comment instead of adding one.
    assert_eq!(
        herald
            .post(pr_event(
                "info",
                "ReconciliationSucceeded",
                "2024-01-01T10:05:00Z"
            ))
            .await
            .0,
        202
    );
    herald_tests::eventually("edited", || async {
        server
            .requests()
            .iter()
            .any(|r| r.method == "PATCH" && r.answered == 200)
            .then_some(())
    })
    .await;
    assert_eq!(github.comments("org/podinfo", 7).len(), 1);
    assert!(dead_letters(&nats).await.is_empty());
}

#[tokio::test]
async fn an_app_github_refuses_is_a_dead_letter_that_says_why_without_the_key() {
    let nats = TestNats::start().await;
    let github = FakeGitHub::start().await;
    // Another App's id: GitHub refuses the JWT (wrong issuer for this key).
    let secret = app_secret(
        "gh-app",
        &[
            ("githubAppID", "999"),
            ("githubAppInstallationID", &INSTALLATION_ID.to_string()),
        ],
    );
    let dir = config_dir(&manifests(&github.server(), "github", &secret));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    assert_eq!(
        herald
            .post(event("error", "BuildFailed", "2024-01-01T10:00:00Z"))
            .await
            .0,
        202
    );
    let dead = herald_tests::eventually("dead letter", || async {
        dead_letters(&nats).await.into_iter().next()
    })
    .await;
    let reason = &dead.1.reason;
    assert!(
        reason.contains("could not get a GitHub App installation token"),
        "{reason}"
    );
    assert!(reason.contains("401"), "{reason}");
    let shown = format!("{:?}", dead.1);
    let key_line = APP_PRIVATE_KEY.lines().nth(1).unwrap();
    assert!(!shown.contains(key_line), "the private key leaked: {shown}");
    assert_eq!(token_posts(&github.server()), 1, "a 401 is not retried");
    assert!(github.statuses("org/podinfo", SHA).is_empty());
}
