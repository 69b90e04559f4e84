//! The load driver: Flux events POSTed over HTTP/1.1 keep-alive from a tokio
//! runtime of its own (its own threads), either as fast as a fixed number of
//! connections allows (closed loop) or at a fixed rate (open loop).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::HeaderValue;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use crate::now_ns;

/// What precedes the sequence number in every event's message.
pub const SEQ_MARKER: &str = "herald-bench seq=";

/// The involved object of every event; the catalog's matching Alert selects it.
pub const EVENT_NAMESPACE: &str = "apps";
/// See [`EVENT_NAMESPACE`].
pub const EVENT_KIND: &str = "Kustomization";

/// A Flux event as kustomize-controller posts it; `seq` makes each one
/// differ (Herald drops repeats of object + message + revision).
pub fn event_body(seq: u64) -> String {
    format!(
        concat!(
            r#"{{"involvedObject":{{"apiVersion":"kustomize.toolkit.fluxcd.io/v1","kind":"{kind}","#,
            r#""name":"podinfo","namespace":"{ns}","uid":"7d0cdc51-ddcf-4743-b223-83ca5c699632"}},"#,
            r#""metadata":{{"kustomize.toolkit.fluxcd.io/revision":"main@sha1:67e2c98a60dc92283531412a9e604dd4bae005a9"}},"#,
            r#""severity":"info","reason":"ReconciliationSucceeded","#,
            r#""message":"{marker}{seq}: Service/apps/podinfo configured\nDeployment/apps/podinfo configured\nHorizontalPodAutoscaler/apps/podinfo configured","#,
            r#""reportingController":"kustomize-controller","reportingInstance":"kustomize-controller-7c7b47f5f-8bhrp","#,
            r#""timestamp":"2026-11-21T07:27:02Z"}}"#
        ),
        kind = EVENT_KIND,
        ns = EVENT_NAMESPACE,
        marker = SEQ_MARKER,
        seq = seq,
    )
}

/// What one load phase did.
#[derive(Debug, Default)]
pub struct Sent {
    /// (sequence number, POST start in ns) of every request answered 202.
    pub accepted: Vec<(u64, u64)>,
    /// How long each accepted request took to be answered (ns), in the order of `accepted`.
    pub answer_times: Vec<u64>,
    /// Requests answered otherwise or failed (refusals included).
    pub failed: u64,
    /// Of the failed, those answered `503` with a `Retry-After` (over a share).
    pub refused: u64,
    /// When the first request started and the last answer came (ns).
    pub first_start: u64,
    pub last_answer: u64,
    /// Requests that started 5 ms or more after their scheduled time (open loop).
    pub late_starts: u64,
}

/// The load driver.
#[derive(Debug, Clone)]
pub struct Load {
    handle: Handle,
    client: reqwest::Client,
    next_seq: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct Shared {
    sent: Mutex<Sent>,
}

impl Shared {
    fn record(&self, seq: u64, start: u64, answer: Answer, late: bool) {
        let answered = now_ns();
        let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        match answer {
            Answer::Accepted => {
                sent.accepted.push((seq, start));
                sent.answer_times.push(answered.saturating_sub(start));
            }
            Answer::Refused => {
                sent.failed += 1;
                sent.refused += 1;
            }
            Answer::Failed => sent.failed += 1,
        }
        if late {
            sent.late_starts += 1;
        }
        if sent.first_start == 0 || start < sent.first_start {
            sent.first_start = start;
        }
        sent.last_answer = sent.last_answer.max(answered);
    }

    fn take(&self) -> Sent {
        std::mem::take(&mut *self.sent.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A tokio runtime of the bench's own, shut down without waiting when
/// dropped (which async code may do, unlike dropping a runtime).
#[derive(Debug)]
pub struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    /// A runtime of `threads` workers named `name`.
    pub fn new(name: &str, threads: usize) -> anyhow::Result<Self> {
        Ok(Self(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .thread_name(name)
                .enable_all()
                .build()?,
        )))
    }

    /// Its handle.
    pub fn handle(&self) -> Handle {
        self.0
            .as_ref()
            .map(|runtime| runtime.handle().clone())
            .unwrap_or_else(Handle::current)
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// How a POST was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `202 Accepted`.
    Accepted,
    /// `503` with `Retry-After`: over a share, try later.
    Refused,
    /// Anything else, or no answer.
    Failed,
}

/// Who the POSTs say they are: each POST takes the next of these
/// `Authorization` values in turn (none: no credentials).
#[derive(Debug, Clone, Default)]
pub struct Credentials(Arc<Vec<HeaderValue>>);

impl Credentials {
    /// Basic auth (`cluster:token`) of each cluster, as a Flux controller
    /// sends it from `--events-addr http://<cluster>:<token>@host/`.
    pub fn basic<'a>(clusters: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        use base64::Engine as _;
        let values = clusters
            .into_iter()
            .filter_map(|(cluster, token)| {
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{cluster}:{token}"));
                HeaderValue::from_str(&format!("Basic {encoded}")).ok()
            })
            .collect();
        Self(Arc::new(values))
    }

    /// How many identities there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The identity of the `n`th POST.
    pub fn nth(&self, n: u64) -> Option<&HeaderValue> {
        let len = u64::try_from(self.0.len()).ok().filter(|l| *l > 0)?;
        self.0.get(usize::try_from(n % len).ok()?)
    }

    /// Only the `i`th identity.
    pub fn only(&self, i: usize) -> Self {
        Self(Arc::new(self.0.get(i).cloned().into_iter().collect()))
    }
}

/// A closed-loop phase: `connections` keep-alive connections POST one
/// event after another for `duration` or until `max_events` were sent.
#[derive(Debug, Clone)]
pub struct ClosedLoop {
    pub connections: usize,
    pub duration: Duration,
    pub max_events: u64,
    pub credentials: Credentials,
    /// How long a connection pauses after a POST that was not accepted.
    pub pause_on_failure: Duration,
}

impl ClosedLoop {
    /// No credentials, a 10 ms pause after a failure (not to spin on a
    /// refusing server).
    pub fn new(connections: usize, duration: Duration, max_events: u64) -> Self {
        Self {
            connections,
            duration,
            max_events,
            credentials: Credentials::default(),
            pause_on_failure: Duration::from_millis(10),
        }
    }
}

// === impl Load ===

impl Load {
    /// A driver whose requests run on `handle` (the load runtime).
    pub fn new(handle: Handle) -> anyhow::Result<Self> {
        Ok(Self {
            handle,
            client: Self::own_client()?,
            next_seq: Arc::new(AtomicU64::new(1)),
        })
    }

    /// A client of its own (its own connections), as the default one is set up.
    pub fn own_client() -> anyhow::Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .http1_only()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .timeout(Duration::from_secs(15))
            .build()?)
    }

    /// A driver whose requests run on `handle` (another runtime), with
    /// connections of its own and the same sequence numbers as this one.
    pub fn on(&self, handle: Handle) -> anyhow::Result<Self> {
        Ok(Self {
            handle,
            client: Self::own_client()?,
            next_seq: self.next_seq.clone(),
        })
    }

    /// POSTs event `seq` with `auth`, and tells how it was answered.
    pub async fn post(
        client: &reqwest::Client,
        url: &str,
        seq: u64,
        auth: Option<&HeaderValue>,
    ) -> Answer {
        let mut request = client
            .post(url)
            .header("content-type", "application/json")
            .body(event_body(seq));
        if let Some(auth) = auth {
            request = request.header(reqwest::header::AUTHORIZATION, auth.clone());
        }
        match request.send().await {
            // Read the body so the connection is reused.
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .contains_key(reqwest::header::RETRY_AFTER);
                if response.bytes().await.is_err() {
                    Answer::Failed
                } else if status == reqwest::StatusCode::ACCEPTED {
                    Answer::Accepted
                } else if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && retry_after {
                    Answer::Refused
                } else {
                    Answer::Failed
                }
            }
            Err(_) => Answer::Failed,
        }
    }

    /// POSTs as fast as `connections` concurrent keep-alive connections allow,
    /// for `duration`, or until `max_events` were sent.
    pub async fn closed_loop(
        &self,
        url: &str,
        connections: usize,
        duration: Duration,
        max_events: u64,
    ) -> anyhow::Result<Sent> {
        self.closed(url, &ClosedLoop::new(connections, duration, max_events))
            .await
    }

    /// Runs the closed loop `spec` against `url`.
    pub async fn closed(&self, url: &str, spec: &ClosedLoop) -> anyhow::Result<Sent> {
        let shared = Arc::new(Shared::default());
        let end = tokio::time::Instant::now() + spec.duration;
        let budget = Arc::new(AtomicU64::new(spec.max_events));
        let posts = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::with_capacity(spec.connections);
        for _ in 0..spec.connections {
            let (client, url, shared) = (self.client.clone(), url.to_owned(), shared.clone());
            let (next_seq, budget) = (self.next_seq.clone(), budget.clone());
            let (credentials, posts, pause) = (
                spec.credentials.clone(),
                posts.clone(),
                spec.pause_on_failure,
            );
            workers.push(self.handle.spawn(async move {
                while tokio::time::Instant::now() < end
                    && budget
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                        .is_ok()
                {
                    let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                    let auth = credentials.nth(posts.fetch_add(1, Ordering::Relaxed));
                    let start = now_ns();
                    let answer = Self::post(&client, &url, seq, auth).await;
                    shared.record(seq, start, answer, false);
                    if answer != Answer::Accepted && !pause.is_zero() {
                        // Do not spin on a refusing server.
                        tokio::time::sleep(pause).await;
                    }
                }
            }));
        }
        for worker in workers {
            worker.await?;
        }
        Ok(shared.take())
    }

    /// Each identity of `credentials` POSTs one event every `period` for
    /// `duration`, on a client (connections) of its own, on time whatever
    /// the answers; the identities' first POSTs are spread over one period.
    pub async fn each_at_period(
        &self,
        url: &str,
        credentials: &Credentials,
        period: Duration,
        duration: Duration,
    ) -> anyhow::Result<Sent> {
        let shared = Arc::new(Shared::default());
        let start = tokio::time::Instant::now();
        let identities = credentials.len().max(1);
        let per_identity = (duration.as_nanos() / period.as_nanos().max(1)).max(1);
        let mut schedulers = Vec::with_capacity(identities);
        for i in 0..identities {
            let client = Self::own_client()?;
            let auth = credentials.nth(i as u64).cloned();
            let (url, shared, next_seq) = (url.to_owned(), shared.clone(), self.next_seq.clone());
            let offset = period.mul_f64(i as f64 / identities as f64);
            schedulers.push(self.handle.spawn(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for k in 0..per_identity {
                    let due = start + offset + period.mul_f64(k as f64);
                    tokio::time::sleep_until(due).await;
                    let late =
                        tokio::time::Instant::now().duration_since(due) >= Duration::from_millis(5);
                    let (client, url, shared, auth) =
                        (client.clone(), url.clone(), shared.clone(), auth.clone());
                    let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                    tasks.spawn(async move {
                        let start = now_ns();
                        let answer = Self::post(&client, &url, seq, auth.as_ref()).await;
                        shared.record(seq, start, answer, late);
                    });
                    while tasks.try_join_next().is_some() {}
                }
                while tasks.join_next().await.is_some() {}
            }));
        }
        for scheduler in schedulers {
            scheduler.await?;
        }
        Ok(shared.take())
    }

    /// POSTs `rate` events per second for `duration`, each on time whatever
    /// the answers to the earlier ones, at most `max_in_flight` at once.
    pub async fn open_loop(
        &self,
        url: &str,
        rate: u64,
        duration: Duration,
        max_in_flight: usize,
    ) -> anyhow::Result<Sent> {
        let shared = Arc::new(Shared::default());
        let total = u64::try_from(
            (u128::from(rate) * duration.as_millis() / 1000).min(u128::from(u64::MAX)),
        )?;
        let (client, url, next_seq) = (self.client.clone(), url.to_owned(), self.next_seq.clone());
        let scheduler_shared = shared.clone();
        let scheduler = self.handle.spawn(async move {
            let permits = Arc::new(Semaphore::new(max_in_flight));
            let period = Duration::from_secs(1).div_f64(rate.max(1) as f64);
            let start = tokio::time::Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..total {
                let due = start + period.mul_f64(i as f64);
                tokio::time::sleep_until(due).await;
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let late =
                    tokio::time::Instant::now().duration_since(due) >= Duration::from_millis(5);
                let (client, url, shared) = (client.clone(), url.clone(), scheduler_shared.clone());
                let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                tasks.spawn(async move {
                    let start = now_ns();
                    let answer = Self::post(&client, &url, seq, None).await;
                    shared.record(seq, start, answer, late);
                    drop(permit);
                });
                // Reap finished requests now and then.
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        });
        scheduler.await?;
        Ok(shared.take())
    }
}
