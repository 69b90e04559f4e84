//! What the Kubernetes source tells the cluster about the Alerts and
//! Providers it reads: Kubernetes Events when one becomes unusable, when it
//! recovers, and for each dead letter; and, where a served version has a
//! `/status` subresource, the `Ready` condition with `observedGeneration`.
//!
//! Catalog Events and status are written by one replica at a time, the
//! holder of the Lease `herald-catalog-writer` in Herald's namespace (every
//! router and sender reads the same objects and would otherwise write the
//! same Event and status). Dead-letter Events are written by the replica
//! that made the dead letter: each is made once. Events are aggregated and
//! rate-limited by [`ObjectEvents`].

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::discovery::ApiResource;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Discovered, Served};
use crate::catalog::{Problem, Reporter};
use crate::kubernetes::{EventType, Leadership, ObjectEvents, Ready, StatusOutcome, StatusWriter};

/// The Event reason when an object becomes unusable.
pub const UNUSABLE: &str = "Unusable";
/// The Event reason when an unusable object can be used again.
pub const RECOVERED: &str = "Recovered";
/// The Event reason of a dead letter.
pub const DEAD_LETTER: &str = "DeadLetter";

/// How many status writes run at once.
const STATUS_CONCURRENCY: usize = 8;

/// What the source knows of one Alert or Provider, borrowed from what it
/// holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen<'a> {
    /// `Alert` or `Provider`.
    pub kind: &'static str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a Arc<str>,
    pub generation: i64,
}

/// uids of the objects read by `Kind/namespace/name`, for Event references;
/// shared with the [`DeadLetters`] reporter.
type Uids = Arc<RwLock<HashMap<String, Arc<str>>>>;

/// A 64-bit digest, to remember what was written without keeping it.
fn digest(value: &impl Hash) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

fn reference(
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
    uid: &str,
) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.to_owned()),
        kind: Some(kind.to_owned()),
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        uid: Some(uid.to_owned()),
        ..ObjectReference::default()
    }
}

/// Tells the Alert and Provider of a dead letter, with Events.
#[derive(Clone)]
pub struct DeadLetters {
    events: ObjectEvents,
    uids: Uids,
    alerts: String,
    providers: String,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeadLetters")
    }
}

impl Reporter for DeadLetters {
    fn dead_letter(&self, kind: &str, namespace: &str, name: &str, reason: &str) {
        let api_version = match kind {
            "Alert" => &self.alerts,
            "Provider" => &self.providers,
            _ => return,
        };
        let uid = self
            .uids
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&format!("{kind}/{namespace}/{name}"))
            .cloned();
        // An object that is gone has no one to tell.
        let Some(uid) = uid else { return };
        self.events.emit(
            &reference(api_version, kind, namespace, name, &uid),
            EventType::Warning,
            DEAD_LETTER,
            "Deliver",
            reason,
        );
    }
}

/// A status write to make (kept small: a new writer queues one for every
/// object).
#[derive(Debug)]
struct StatusJob {
    kind: &'static str,
    namespace: String,
    name: String,
    generation: i64,
    /// Why the object is unusable; `None`: it is ready.
    problem: Option<String>,
}

/// Follows the health of the objects from publish to publish and writes
/// Events and status about its changes.
pub struct Health {
    events: ObjectEvents,
    leadership: Leadership,
    uids: Uids,
    alerts: Served,
    providers: Served,
    /// The error problems of each object unusable at the last publish, by
    /// `Kind/namespace/name` (a usable object is not there).
    last: HashMap<String, String>,
    /// Digests of the `(generation, problem)` whose status was last queued,
    /// by digest of `Kind/namespace/name`.
    written: HashMap<u64, u64>,
    status: mpsc::UnboundedSender<StatusJob>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").finish_non_exhaustive()
    }
}

// === impl Health ===

impl Health {
    /// Starts the status writer; returns the tracker and the reporter of
    /// dead letters.
    pub fn start(
        events: ObjectEvents,
        leadership: Leadership,
        status: StatusWriter,
        discovered: &Discovered,
        cancel: &CancellationToken,
    ) -> (Self, DeadLetters) {
        let uids: Uids = Arc::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let resources = [
            ("Alert", discovered.alerts.status.clone()),
            ("Provider", discovered.providers.status.clone()),
        ];
        tokio::spawn(write_statuses(status, resources, rx, cancel.clone()));
        let reporter = DeadLetters {
            events: events.clone(),
            uids: uids.clone(),
            alerts: discovered.alerts.read.api_version.clone(),
            providers: discovered.providers.read.api_version.clone(),
        };
        let health = Self {
            events,
            leadership,
            uids,
            alerts: discovered.alerts.clone(),
            providers: discovered.providers.clone(),
            last: HashMap::new(),
            written: HashMap::new(),
            status: tx,
        };
        (health, reporter)
    }

    /// Whether this replica is the writer, as it changes.
    pub fn leadership(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leadership.subscribe()
    }

    /// The replica became the writer: every status is written again if it
    /// differs from what the object holds.
    pub fn became_leader(&mut self, objects: &[Seen<'_>]) {
        self.written.clear();
        // What is unusable now is told again: the previous writer may have
        // told it, or no one (it was unusable before anyone led).
        for seen in objects {
            if let Some(problem) = self.last.get(&id(seen)) {
                let regarding = self.regarding(seen);
                self.events.emit(
                    &regarding,
                    EventType::Warning,
                    UNUSABLE,
                    "Validate",
                    problem,
                );
            }
        }
        self.queue_statuses(objects);
    }

    /// Takes the objects and problems of a publish: Events for what became
    /// unusable or recovered, status where it changed (both only on the
    /// writer).
    pub fn observe(&mut self, objects: &[Seen<'_>], problems: &[Problem]) {
        // Problems name objects as `Kind/namespace/name`, as [`id`] does.
        let mut unusable: HashMap<&str, String> = HashMap::new();
        for problem in problems.iter().filter(|p| p.is_error()) {
            unusable
                .entry(problem.object.as_str())
                .and_modify(|text| {
                    text.push_str("; ");
                    text.push_str(&problem.reason);
                })
                .or_insert_with(|| problem.reason.clone());
        }
        let leader = self.leadership.is_leader();
        let mut now: HashMap<String, String> = HashMap::new();
        let mut present: Vec<u64> = Vec::with_capacity(objects.len());
        {
            let mut uids = self
                .uids
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            uids.clear();
            for seen in objects {
                let id = id(seen);
                present.push(digest(&id));
                let problem = unusable.get(id.as_str());
                let before = self.last.get(&id);
                if leader && problem != before {
                    let regarding = self.regarding(seen);
                    match problem {
                        Some(text) => {
                            self.events.emit(
                                &regarding,
                                EventType::Warning,
                                UNUSABLE,
                                "Validate",
                                text,
                            );
                        }
                        None => self.events.emit(
                            &regarding,
                            EventType::Normal,
                            RECOVERED,
                            "Validate",
                            "usable again: the problem is resolved",
                        ),
                    }
                }
                if let Some(problem) = problem {
                    now.insert(id.clone(), problem.clone());
                }
                uids.insert(id, Arc::clone(seen.uid));
            }
        }
        present.sort_unstable();
        self.written
            .retain(|id, _| present.binary_search(id).is_ok());
        self.last = now;
        if leader {
            self.queue_statuses(objects);
        }
    }

    /// The reference of an Event about `seen`.
    fn regarding(&self, seen: &Seen<'_>) -> ObjectReference {
        reference(
            &self.served(seen.kind).read.api_version,
            seen.kind,
            seen.namespace,
            seen.name,
            seen.uid,
        )
    }

    fn served(&self, kind: &str) -> &Served {
        if kind == "Alert" {
            &self.alerts
        } else {
            &self.providers
        }
    }

    fn queue_statuses(&mut self, objects: &[Seen<'_>]) {
        for seen in objects {
            if self.served(seen.kind).status.is_none() {
                continue;
            }
            let id = id(seen);
            let problem = self.last.get(&id);
            let state = digest(&(seen.generation, problem));
            if self.written.insert(digest(&id), state) == Some(state) {
                continue;
            }
            // The writer stopped: the process is stopping.
            self.status
                .send(StatusJob {
                    kind: seen.kind,
                    namespace: seen.namespace.to_owned(),
                    name: seen.name.to_owned(),
                    generation: seen.generation,
                    problem: problem.cloned(),
                })
                .ok();
        }
    }
}

fn id(seen: &Seen<'_>) -> String {
    format!("{}/{}/{}", seen.kind, seen.namespace, seen.name)
}

/// Writes queued statuses, a few at a time. A version found to have no
/// `/status` after all is never written again.
async fn write_statuses(
    writer: StatusWriter,
    resources: [(&'static str, Option<ApiResource>); 2],
    rx: mpsc::UnboundedReceiver<StatusJob>,
    cancel: CancellationToken,
) {
    let no_status: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];
    let jobs = futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|job| (job, rx)) },
    );
    let work = jobs.for_each_concurrent(STATUS_CONCURRENCY, |job| {
        let writer = writer.clone();
        let slot = resources.iter().position(|(kind, _)| *kind == job.kind);
        let no_status = &no_status;
        let resources = &resources;
        async move {
            let Some(slot) = slot else { return };
            let Some(resource) = &resources[slot].1 else {
                return;
            };
            let flag = &no_status[slot];
            if flag.load(Ordering::Relaxed) {
                return;
            }
            let ready = match job.problem {
                None => Ready {
                    ready: true,
                    reason: "Succeeded".to_owned(),
                    message: "Herald uses this object".to_owned(),
                },
                Some(text) => Ready {
                    ready: false,
                    reason: "Unusable".to_owned(),
                    message: text,
                },
            };
            match writer
                .write_ready(resource, &job.namespace, &job.name, job.generation, &ready)
                .await
            {
                Ok(StatusOutcome::NoStatus) => {
                    if !flag.swap(true, Ordering::Relaxed) {
                        tracing::warn!(version = %resource.api_version, kind = %resource.kind, "The served version has no status subresource after all; status is not written.");
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(object = %format!("{}/{}/{}", job.kind, job.namespace, job.name), error = %error, "Cannot write the Ready status.");
                }
            }
        }
    });
    tokio::select! {
        () = cancel.cancelled() => {}
        () = work => {}
    }
}
