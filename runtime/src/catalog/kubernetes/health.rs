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

/// `(kind, namespace, name)`.
type ObjectKey = (String, String, String);

/// What the source knows of one Alert or Provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: i64,
}

/// uids of the objects read, for Event references; shared with the
/// [`DeadLetters`] reporter.
type Uids = Arc<RwLock<HashMap<ObjectKey, String>>>;

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
            .get(&(kind.to_owned(), namespace.to_owned(), name.to_owned()))
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

/// A status write to make.
#[derive(Debug)]
struct StatusJob {
    resource: ApiResource,
    id: String,
    namespace: String,
    name: String,
    generation: i64,
    ready: Ready,
}

/// Follows the health of the objects from publish to publish and writes
/// Events and status about its changes.
pub struct Health {
    events: ObjectEvents,
    leadership: Leadership,
    uids: Uids,
    alerts: Served,
    providers: Served,
    /// Each object's error problems at the last publish (`None`: usable).
    last: HashMap<String, Option<String>>,
    /// The `(generation, problem)` whose status was last queued, per object.
    written: HashMap<String, (i64, Option<String>)>,
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
        tokio::spawn(write_statuses(status, rx, cancel.clone()));
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
    pub fn became_leader(&mut self, objects: &[Seen]) {
        self.written.clear();
        // What is unusable now is told again: the previous writer may have
        // told it, or no one (it was unusable before anyone led).
        for seen in objects {
            if let Some(Some(problem)) = self.last.get(&id(seen)) {
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
    pub fn observe(&mut self, objects: &[Seen], problems: &[Problem]) {
        let mut now: HashMap<String, Option<String>> = HashMap::with_capacity(objects.len());
        {
            let mut uids = self
                .uids
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            uids.clear();
            for seen in objects {
                uids.insert(
                    (seen.kind.clone(), seen.namespace.clone(), seen.name.clone()),
                    seen.uid.clone(),
                );
                now.insert(id(seen), None);
            }
        }
        for problem in problems.iter().filter(|p| p.is_error()) {
            if let Some(slot) = now.get_mut(&problem.object) {
                match slot {
                    Some(text) => {
                        text.push_str("; ");
                        text.push_str(&problem.reason);
                    }
                    None => *slot = Some(problem.reason.clone()),
                }
            }
        }
        let leader = self.leadership.is_leader();
        for seen in objects {
            let id = id(seen);
            let problem = now.get(&id).cloned().flatten();
            let before = self.last.get(&id).cloned().flatten();
            if leader && problem != before {
                let regarding = self.regarding(seen);
                match &problem {
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
        }
        self.written.retain(|id, _| now.contains_key(id));
        self.last = now;
        if leader {
            self.queue_statuses(objects);
        }
    }

    /// The reference of an Event about `seen`.
    fn regarding(&self, seen: &Seen) -> ObjectReference {
        reference(
            &self.served(&seen.kind).read.api_version,
            &seen.kind,
            &seen.namespace,
            &seen.name,
            &seen.uid,
        )
    }

    fn served(&self, kind: &str) -> &Served {
        if kind == "Alert" {
            &self.alerts
        } else {
            &self.providers
        }
    }

    fn queue_statuses(&mut self, objects: &[Seen]) {
        for seen in objects {
            let Some(resource) = self.served(&seen.kind).status.clone() else {
                continue;
            };
            let id = id(seen);
            let problem = self.last.get(&id).cloned().flatten();
            let state = (seen.generation, problem.clone());
            if self.written.get(&id) == Some(&state) {
                continue;
            }
            self.written.insert(id.clone(), state);
            let ready = match problem {
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
            // The writer stopped: the process is stopping.
            self.status
                .send(StatusJob {
                    resource,
                    id,
                    namespace: seen.namespace.clone(),
                    name: seen.name.clone(),
                    generation: seen.generation,
                    ready,
                })
                .ok();
        }
    }
}

fn id(seen: &Seen) -> String {
    format!("{}/{}/{}", seen.kind, seen.namespace, seen.name)
}

/// Writes queued statuses, a few at a time. A version found to have no
/// `/status` after all is never written again.
async fn write_statuses(
    writer: StatusWriter,
    rx: mpsc::UnboundedReceiver<StatusJob>,
    cancel: CancellationToken,
) {
    let no_status: Arc<HashMap<String, AtomicBool>> = Arc::new(
        ["Alert", "Provider"]
            .into_iter()
            .map(|k| (k.to_owned(), AtomicBool::new(false)))
            .collect(),
    );
    let jobs = futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|job| (job, rx)) },
    );
    let work = jobs.for_each_concurrent(STATUS_CONCURRENCY, |job| {
        let writer = writer.clone();
        let no_status = no_status.clone();
        async move {
            let flag = no_status.get(&job.resource.kind);
            if flag.is_some_and(|f| f.load(Ordering::Relaxed)) {
                return;
            }
            match writer
                .write_ready(&job.resource, &job.namespace, &job.name, job.generation, &job.ready)
                .await
            {
                Ok(StatusOutcome::NoStatus) => {
                    if let Some(flag) = flag
                        && !flag.swap(true, Ordering::Relaxed)
                    {
                        tracing::warn!(version = %job.resource.api_version, kind = %job.resource.kind, "The served version has no status subresource after all; status is not written.");
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(object = %job.id, error = %error, "Cannot write the Ready status.");
                }
            }
        }
    });
    tokio::select! {
        () = cancel.cancelled() => {}
        () = work => {}
    }
}
