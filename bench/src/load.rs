//! The load driver: Flux events POSTed over HTTP/1.1 keep-alive from a tokio
//! runtime of its own (its own threads), either as fast as a fixed number of
//! connections allows (closed loop) or at a fixed rate (open loop).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

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
    /// Requests answered otherwise or failed.
    pub failed: u64,
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
    fn record(&self, seq: u64, start: u64, ok: bool, late: bool) {
        let answered = now_ns();
        let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        if ok {
            sent.accepted.push((seq, start));
        } else {
            sent.failed += 1;
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

// === impl Load ===

impl Load {
    /// A driver whose requests run on `handle` (the load runtime).
    pub fn new(handle: Handle) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .http1_only()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .timeout(Duration::from_secs(15))
            .build()?;
        Ok(Self {
            handle,
            client,
            next_seq: Arc::new(AtomicU64::new(1)),
        })
    }

    async fn post(client: &reqwest::Client, url: &str, seq: u64) -> bool {
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .body(event_body(seq))
            .send()
            .await;
        match response {
            // Read the body so the connection is reused.
            Ok(response) => {
                let accepted = response.status() == reqwest::StatusCode::ACCEPTED;
                response.bytes().await.is_ok() && accepted
            }
            Err(_) => false,
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
        let shared = Arc::new(Shared::default());
        let end = tokio::time::Instant::now() + duration;
        let budget = Arc::new(AtomicU64::new(max_events));
        let mut workers = Vec::with_capacity(connections);
        for _ in 0..connections {
            let (client, url, shared) = (self.client.clone(), url.to_owned(), shared.clone());
            let (next_seq, budget) = (self.next_seq.clone(), budget.clone());
            workers.push(self.handle.spawn(async move {
                while tokio::time::Instant::now() < end
                    && budget
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                        .is_ok()
                {
                    let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                    let start = now_ns();
                    let ok = Self::post(&client, &url, seq).await;
                    shared.record(seq, start, ok, false);
                    if !ok {
                        // Do not spin on a refusing server.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }));
        }
        for worker in workers {
            worker.await?;
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
                    let ok = Self::post(&client, &url, seq).await;
                    shared.record(seq, start, ok, late);
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
