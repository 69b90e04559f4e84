//! Commit statuses on a fake Bitbucket Server, a fake Bitbucket Cloud and a
//! fake Azure DevOps: green after a successful reconciliation, red after a
//! failure, never back to green for an older event, not written again when
//! unchanged, and dead with the host's message when the credentials are
//! refused.

use herald_tests::fake::Reply;
use herald_tests::fake::azure_devops::{self, FakeAzureDevOps};
use herald_tests::fake::bitbucket::{self, FakeBitbucket};
use herald_tests::fake::bitbucket_server::{self, FakeBitbucketServer};
use herald_tests::herald::{TestHerald, config_dir};
use herald_tests::nats::TestNats;

const SHA: &str = "67e2c98a60dc92283531412a9e604dd4bae005a9";
const UID: &str = "0c9c2e41-d2f9-4f9b-9c41-bebc1984d67a";
const CONTEXT: &str = "kustomization/apps/0c9c2e41";
/// The lowercase hex SHA-1 of [`CONTEXT`]: the Bitbucket status key.
const KEY: &str = "534add2e1e94c46fbe0f8e657ba36c652fa8d2dd";

/// A Kustomization event for `name`.
fn event(name: &str, severity: &str, reason: &str, timestamp: &str, update: bool) -> String {
    let update = if update {
        r#","kustomize.toolkit.fluxcd.io/commit_status":"update""#
    } else {
        ""
    };
    format!(
        r#"{{"involvedObject":{{"kind":"Kustomization","namespace":"flux-system","name":"{name}","apiVersion":"kustomize.toolkit.fluxcd.io/v1"}},
            "severity":"{severity}","reason":"{reason}","message":"{reason} at {timestamp}","timestamp":"{timestamp}",
            "metadata":{{"kustomize.toolkit.fluxcd.io/revision":"main@sha1:{SHA}"{update}}},
            "reportingController":"kustomize-controller"}}"#
    )
}

/// A Provider of `type_` at `address` whose Secret holds `secret` (a YAML
/// flow map's entries), and an Alert sending it the events of Kustomization
/// `object`.
fn provider(
    name: &str,
    uid: &str,
    type_: &str,
    address: &str,
    secret: &str,
    object: &str,
) -> String {
    format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
         metadata: {{name: {name}, namespace: flux-system, uid: {uid}}}\n\
         spec: {{type: {type_}, address: '{address}', secretRef: {{name: {name}-auth}}}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}-auth, namespace: flux-system}}\n\
         stringData: {{{secret}}}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata: {{name: {name}, namespace: flux-system}}\n\
         spec: {{providerRef: {{name: {name}}}, eventSources: [{{kind: Kustomization, name: {object}}}]}}\n"
    )
}

/// Waits until Herald counts `n` deliveries of `type_` with `outcome`.
async fn counted(herald: &TestHerald, type_: &str, outcome: &str, n: u32) {
    let line = format!(
        r#"herald_deliveries_total{{provider_type="{type_}",outcome="{outcome}",cluster="test"}} {n}"#
    );
    herald_tests::eventually(&line, || async {
        herald
            .admin("/metrics")
            .await
            .1
            .contains(&line)
            .then_some(())
    })
    .await;
}

/// Posts `body` to ingest, which must accept it.
async fn post(herald: &TestHerald, body: String) {
    assert_eq!(herald.post(body).await.0, 202);
}

/// The only dead letter's reason, checked to hold no `secret`.
async fn dead_reason(nats: &TestNats, secret: &str) -> String {
    let js = nats.jetstream().await;
    let stream = js
        .get_stream(herald_proto::names::DEAD_STREAM)
        .await
        .unwrap();
    let letter = stream.get_raw_message(1).await.unwrap();
    let letter = <herald_proto::DeadLetter as prost::Message>::decode(letter.payload).unwrap();
    assert!(!format!("{letter:?}").contains(secret));
    letter.reason
}

/// `Some((state, description))` as JSON texts.
fn is(state: &str, description: &str) -> Option<(String, String)> {
    Some((format!("{state:?}"), format!("{description:?}")))
}

#[tokio::test]
async fn bitbucket_server_statuses_turn_green_then_red_and_never_go_back() {
    herald_tests::init();
    let nats = TestNats::start().await;
    let bitbucket = FakeBitbucketServer::start("/bitbucket", &["PROJ/repo", "PROJ/broken"]).await;
    let address = bitbucket.url("/bitbucket/scm/PROJ/repo.git");
    let manifests = format!(
        "{}---\n{}",
        provider(
            "bbs",
            UID,
            "bitbucketserver",
            &address,
            &format!("token: {}", bitbucket_server::TOKEN),
            "apps"
        ),
        provider(
            "bbs-bad",
            "11111111-2222",
            "bitbucketserver",
            &bitbucket.url("/bitbucket/scm/PROJ/broken.git"),
            &format!(
                "username: {}, password: bbs-wrong",
                bitbucket_server::USERNAME
            ),
            "broken"
        ),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let current = || {
        bitbucket
            .status("PROJ/repo", SHA, KEY)
            .map(|s| (s["state"].to_string(), s["description"].to_string()))
    };
    let posts = || {
        bitbucket
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    };
    let builds =
        format!("/bitbucket/rest/api/latest/projects/PROJ/repos/repo/commits/{SHA}/builds");

    // A successful reconciliation: green, under the context path.
    post(
        &herald,
        event(
            "apps",
            "info",
            "ReconciliationSucceeded",
            "2024-01-01T10:00:00Z",
            true,
        ),
    )
    .await;
    counted(&herald, "bitbucketserver", "delivered", 1).await;
    assert_eq!(current(), is("SUCCESSFUL", "reconciliation succeeded"));
    let requests = bitbucket.requests();
    let [read, create] = requests.as_slice() else {
        panic!("one read and one post: {requests:?}");
    };
    assert_eq!(read.method, "GET");
    assert_eq!(read.path, builds);
    assert_eq!(read.query, format!("key={KEY}"));
    assert_eq!(read.answered, 404);
    assert!(read.body.is_empty());
    assert_eq!(create.method, "POST");
    assert_eq!(create.path, builds);
    assert_eq!(create.query, "");
    assert_eq!(create.answered, 204);
    assert_eq!(
        create.text(),
        format!(
            "{{\"description\":\"reconciliation succeeded\",\"key\":\"{KEY}\",\
             \"name\":\"kustomization/apps [reconciliation succeeded]\",\
             \"state\":\"SUCCESSFUL\",\"url\":\"{address}\"}}\n"
        )
    );
    for request in [read, create] {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {}", bitbucket_server::TOKEN))
        );
        assert_eq!(
            request.header("x-atlassian-token").as_deref(),
            Some("no-check")
        );
        assert_eq!(
            request.header("x-requested-with").as_deref(),
            Some("XMLHttpRequest")
        );
    }
    assert_eq!(
        create.header("content-type").as_deref(),
        Some("application/json")
    );

    // A later failure, after a rate limit: red.
    bitbucket.script([Reply::status(429).header("retry-after", "0")]);
    post(
        &herald,
        event(
            "apps",
            "error",
            "BuildFailed",
            "2024-01-01T10:05:00Z",
            false,
        ),
    )
    .await;
    counted(&herald, "bitbucketserver", "delivered", 2).await;
    assert_eq!(current(), is("FAILED", "build failed"));
    assert!(bitbucket.requests().iter().any(|r| r.answered == 429));

    // The older success delivered again (another emission): not green again.
    post(
        &herald,
        event(
            "apps",
            "info",
            "ReconciliationSucceeded",
            "2024-01-01T10:00:01Z",
            true,
        ),
    )
    .await;
    counted(&herald, "bitbucketserver", "superseded", 1).await;
    assert_eq!(current(), is("FAILED", "build failed"));

    // The same failure again, newer: read, equal, not written twice.
    let before = posts();
    post(
        &herald,
        event(
            "apps",
            "error",
            "BuildFailed",
            "2024-01-01T10:06:00Z",
            false,
        ),
    )
    .await;
    counted(&herald, "bitbucketserver", "delivered", 3).await;
    assert_eq!(posts(), before, "an unchanged status is not written again");
    let last = bitbucket.requests().pop().unwrap();
    assert_eq!((last.method.as_str(), last.answered), ("GET", 200));

    // A refused password: dead at once, with Bitbucket Server's message.
    post(
        &herald,
        event(
            "broken",
            "error",
            "BuildFailed",
            "2024-01-01T11:00:00Z",
            false,
        ),
    )
    .await;
    counted(&herald, "bitbucketserver", "dead", 1).await;
    assert_eq!(
        dead_reason(&nats, "bbs-wrong").await,
        "could not get existing commit status: destination answered 401: \
         Authentication failed. Please check your credentials and try again."
    );
    let refused = bitbucket.requests().pop().unwrap();
    assert_eq!(
        refused.header("authorization").as_deref(),
        Some("Basic YWRtaW46YmJzLXdyb25n")
    );
    assert!(bitbucket.status("PROJ/broken", SHA, KEY).is_none());
    herald.shutdown().await;
}

#[tokio::test]
async fn bitbucket_cloud_statuses_turn_green_then_red_and_never_go_back() {
    herald_tests::init();
    let nats = TestNats::start().await;
    let bitbucket = FakeBitbucket::start(&["workspace/repo", "workspace/broken"]).await;
    let manifests = format!(
        "{}---\n{}",
        provider(
            "bitbucket",
            UID,
            "bitbucket",
            &bitbucket.url("/workspace/repo.git"),
            &format!(
                "token: '{}:{}'",
                bitbucket::USERNAME,
                bitbucket::APP_PASSWORD
            ),
            "apps"
        ),
        provider(
            "bitbucket-bad",
            "11111111-2222",
            "bitbucket",
            &bitbucket.url("/workspace/broken.git"),
            "token: 'flux-bot:app-wrong'",
            "broken"
        ),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let current = || {
        bitbucket
            .status("workspace/repo", SHA, KEY)
            .map(|s| (s["state"].to_string(), s["description"].to_string()))
    };
    let posts = || {
        bitbucket
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    };
    let statuses = format!("/2.0/repositories/workspace/repo/commit/{SHA}/statuses/build");

    // A successful reconciliation: green, through the address host's API.
    post(
        &herald,
        event(
            "apps",
            "info",
            "ReconciliationSucceeded",
            "2024-01-01T10:00:00Z",
            true,
        ),
    )
    .await;
    counted(&herald, "bitbucket", "delivered", 1).await;
    assert_eq!(current(), is("SUCCESSFUL", "reconciliation succeeded"));
    let requests = bitbucket.requests();
    let [read, create] = requests.as_slice() else {
        panic!("one read and one post: {requests:?}");
    };
    assert_eq!(read.method, "GET");
    assert_eq!(read.path, format!("{statuses}/{KEY}"));
    assert_eq!(read.answered, 404);
    assert_eq!(create.method, "POST");
    assert_eq!(create.path, statuses);
    assert_eq!(create.answered, 201);
    assert_eq!(
        create.text(),
        format!(
            "{{\"key\":\"{KEY}\",\"url\":\"https://bitbucket.org\",\"state\":\"SUCCESSFUL\",\
             \"name\":\"kustomization/apps\",\"description\":\"reconciliation succeeded\"}}"
        )
    );
    assert_eq!(KEY.len(), 40);
    for request in [read, create] {
        assert_eq!(
            request.header("authorization").as_deref(),
            Some(bitbucket::BASIC)
        );
    }
    assert_eq!(
        create.header("content-type").as_deref(),
        Some("application/json")
    );

    // A later failure, after a rate limit: red.
    bitbucket.script([Reply::status(429).header("retry-after", "0")]);
    post(
        &herald,
        event(
            "apps",
            "error",
            "BuildFailed",
            "2024-01-01T10:05:00Z",
            false,
        ),
    )
    .await;
    counted(&herald, "bitbucket", "delivered", 2).await;
    assert_eq!(current(), is("FAILED", "build failed"));

    // The older success delivered again (another emission): not green again.
    post(
        &herald,
        event(
            "apps",
            "info",
            "ReconciliationSucceeded",
            "2024-01-01T10:00:01Z",
            true,
        ),
    )
    .await;
    counted(&herald, "bitbucket", "superseded", 1).await;
    assert_eq!(current(), is("FAILED", "build failed"));

    // The same failure again, newer: read, equal, not written twice.
    let before = posts();
    post(
        &herald,
        event(
            "apps",
            "error",
            "BuildFailed",
            "2024-01-01T10:06:00Z",
            false,
        ),
    )
    .await;
    counted(&herald, "bitbucket", "delivered", 3).await;
    assert_eq!(posts(), before, "an unchanged status is not written again");

    // A refused app password: dead at once, with Bitbucket's message.
    post(
        &herald,
        event(
            "broken",
            "error",
            "BuildFailed",
            "2024-01-01T11:00:00Z",
            false,
        ),
    )
    .await;
    counted(&herald, "bitbucket", "dead", 1).await;
    assert_eq!(
        dead_reason(&nats, "app-wrong").await,
        "could not get commit status: destination answered 401: Invalid credentials"
    );
    assert!(bitbucket.status("workspace/broken", SHA, KEY).is_none());
    herald.shutdown().await;
}

#[tokio::test]
async fn azure_devops_statuses_turn_green_then_red_and_never_go_back() {
    herald_tests::init();
    let nats = TestNats::start().await;
    let azure = FakeAzureDevOps::start(&["org/project/repo", "org/project/broken"]).await;
    let manifests = format!(
        "{}---\n{}",
        provider(
            "azure",
            UID,
            "azuredevops",
            &azure.url("/org/project/_git/repo"),
            &format!("token: {}", azure_devops::PAT),
            "apps"
        ),
        provider(
            "azure-bad",
            "11111111-2222",
            "azuredevops",
            &azure.url("/org/project/_git/broken"),
            "token: azdo-wrong",
            "broken"
        ),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let current = || {
        azure
            .statuses("org/project/repo", SHA)
            .first()
            .map(|s| (s["state"].to_string(), s["description"].to_string()))
    };
    let posts = || {
        azure
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    };
    let statuses = format!("/org/project/_apis/git/repositories/repo/commits/{SHA}/statuses");

    // A successful reconciliation: green, in the `fluxcd` genre.
    post(
        &herald,
        event(
            "apps",
            "info",
            "ReconciliationSucceeded",
            "2024-01-01T10:00:00Z",
            true,
        ),
    )
    .await;
    counted(&herald, "azuredevops", "delivered", 1).await;
    assert_eq!(current(), is("succeeded", "reconciliation succeeded"));
    let requests = azure.requests();
    let [list, create] = requests.as_slice() else {
        panic!("one list and one create: {requests:?}");
    };
    for request in [list, create] {
        assert_eq!(request.path, statuses);
        assert_eq!(request.query, "api-version=6.0");
        assert_eq!(
            request.header("authorization").as_deref(),
            Some(azure_devops::BASIC)
        );
        assert_eq!(
            request.header("accept").as_deref(),
            Some("application/json;api-version=6.0")
        );
        assert_eq!(
            request.header("x-tfs-fedauthredirect").as_deref(),
            Some("Suppress")
        );
        assert_eq!(request.header("x-tfs-session").map(|s| s.len()), Some(36));
    }
    assert_eq!(list.method, "GET");
    assert_eq!(create.method, "POST");
    assert_eq!(create.answered, 201);
    assert_eq!(
        create.text(),
        format!(
            "{{\"context\":{{\"genre\":\"fluxcd\",\"name\":\"{CONTEXT}\"}},\
             \"description\":\"reconciliation succeeded\",\"state\":\"succeeded\"}}"
        )
    );
    assert_eq!(
        create.header("content-type").as_deref(),
        Some("application/json;charset=utf-8")
    );

    // A later failure, after a rate limit: red.
    azure.script([Reply::status(429).header("retry-after", "0")]);
    post(
        &herald,
        event(
            "apps",
            "error",
            "BuildFailed",
            "2024-01-01T10:05:00Z",
            false,
        ),
    )
    .await;
    counted(&herald, "azuredevops", "delivered", 2).await;
    assert_eq!(current(), is("error", "build failed"));

    // The older success delivered again (another emission): not green again.
    post(
        &herald,
        event(
            "apps",
            "info",
            "ReconciliationSucceeded",
            "2024-01-01T10:00:01Z",
            true,
        ),
    )
    .await;
    counted(&herald, "azuredevops", "superseded", 1).await;
    assert_eq!(current(), is("error", "build failed"));

    // The same failure again, newer: listed, equal, not written twice.
    let before = posts();
    post(
        &herald,
        event(
            "apps",
            "error",
            "BuildFailed",
            "2024-01-01T10:06:00Z",
            false,
        ),
    )
    .await;
    counted(&herald, "azuredevops", "delivered", 3).await;
    assert_eq!(posts(), before, "an unchanged status is not written again");
    assert_eq!(azure.statuses("org/project/repo", SHA).len(), 2);

    // A refused token: dead at once, with Azure DevOps' message.
    post(
        &herald,
        event(
            "broken",
            "error",
            "BuildFailed",
            "2024-01-01T11:00:00Z",
            false,
        ),
    )
    .await;
    counted(&herald, "azuredevops", "dead", 1).await;
    assert_eq!(
        dead_reason(&nats, "azdo-wrong").await,
        "could not list commit statuses: destination answered 401: \
         TF400813: The user '' is not authorized to access this resource."
    );
    assert!(azure.statuses("org/project/broken", SHA).is_empty());
    herald.shutdown().await;
}
