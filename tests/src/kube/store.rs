//! The fake's etcd: objects by (group, plural, namespace, name) with one
//! global resourceVersion counter, the bookkeeping the API server does on
//! every write (uid, generation, creationTimestamp), and a bounded history
//! of changes that watches resume from until it is compacted.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::catalog::{Resource, StatusMode};

/// How many changes the history keeps (the watch cache's window).
const HISTORY: usize = 1000;

/// Where objects of one resource are stored, across its served versions.
pub type Family = (String, String);

/// One object's key.
type Key = (String, String, String, String);

/// The family of `resource`: every version of it shares one storage.
#[must_use]
pub fn family(resource: &Resource) -> Family {
    (resource.group.to_owned(), resource.plural.to_owned())
}

/// A change as watches see it.
#[derive(Debug, Clone)]
pub enum Change {
    /// An object was added, modified or deleted at `rv`.
    Object {
        rv: u64,
        kind: &'static str,
        family: Family,
        namespace: String,
        object: Value,
    },
    /// The history was compacted: every open watch is too old now.
    Expired { rv: u64 },
}

/// An API error, answered as a `Status`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

// === impl ApiError ===

impl ApiError {
    #[must_use]
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }

    #[must_use]
    pub fn not_found(resource: &Resource, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!(
                "{}.{} \"{name}\" not found",
                resource.plural, resource.group
            ),
        )
    }

    /// The `Status` object.
    #[must_use]
    pub fn status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

/// Which part of an object a write replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The object (its `status` too, unless the version has a status subresource).
    Main,
    /// Only `status`, through `/status`.
    Status,
}

/// The objects and their history.
pub struct Store {
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Change>,
    /// Watches from a resourceVersion below this are expired.
    floor: u64,
    changes: broadcast::Sender<Arc<Change>>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            rv: 1,
            uid: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            floor: 0,
            changes: broadcast::channel(4096).0,
        }
    }
}

fn key(family: &Family, namespace: &str, name: &str) -> Key {
    (
        family.0.clone(),
        family.1.clone(),
        namespace.to_owned(),
        name.to_owned(),
    )
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// `object` as served under `resource`'s version: `apiVersion` and `kind`
/// set, `status` pruned where that version has none.
#[must_use]
pub fn served(resource: &Resource, object: &Value) -> Value {
    let mut object = object.clone();
    object["apiVersion"] = json!(resource.api_version());
    object["kind"] = json!(resource.kind);
    if resource.status == StatusMode::Pruned
        && let Some(map) = object.as_object_mut()
    {
        map.remove("status");
    }
    object
}

/// Everything but `metadata` and `status`: a change here bumps `generation`.
fn spec_of(object: &Value) -> Map<String, Value> {
    object
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let Some(map) = target.as_object_mut() else {
        return;
    };
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

// === impl Store ===

impl Store {
    /// The newest resourceVersion.
    #[must_use]
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// The oldest resourceVersion a watch may resume from.
    #[must_use]
    pub fn floor(&self) -> u64 {
        self.floor
    }

    fn record(&mut self, kind: &'static str, family: &Family, namespace: &str, object: &Value) {
        let change = Change::Object {
            rv: self.rv,
            kind,
            family: family.clone(),
            namespace: namespace.to_owned(),
            object: object.clone(),
        };
        if self.history.len() == HISTORY
            && let Some(Change::Object { rv, .. }) = self.history.pop_front()
        {
            self.floor = rv;
        }
        self.history.push_back(change.clone());
        self.changes.send(Arc::new(change)).ok();
    }

    /// Forgets the history: every watch from an older resourceVersion,
    /// open or new, is answered `410 Expired`.
    pub fn expire_history(&mut self) {
        self.rv += 1;
        self.floor = self.rv;
        self.history.clear();
        self.changes
            .send(Arc::new(Change::Expired { rv: self.rv }))
            .ok();
    }

    /// One object as stored.
    #[must_use]
    pub fn get(&self, resource: &Resource, namespace: &str, name: &str) -> Option<Value> {
        self.objects
            .get(&key(&family(resource), namespace, name))
            .cloned()
    }

    /// Objects of `resource` (in `namespace`, or everywhere when `None`), by key.
    #[must_use]
    pub fn list(&self, resource: &Resource, namespace: Option<&str>) -> Vec<Value> {
        self.scan(resource, namespace, None).cloned().collect()
    }

    /// As [`Store::list`], borrowed, and only the objects after `after`
    /// (namespace, name) in key order: a list page reads only what it sends.
    pub fn scan<'a>(
        &'a self,
        resource: &Resource,
        namespace: Option<&'a str>,
        after: Option<(&str, &str)>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        let (group, plural) = family(resource);
        let first = match (after, namespace) {
            (Some((ns, name)), _) => {
                Bound::Excluded(key(&(group.clone(), plural.clone()), ns, name))
            }
            (None, Some(ns)) => Bound::Included(key(&(group.clone(), plural.clone()), ns, "")),
            (None, None) => Bound::Included(key(&(group.clone(), plural.clone()), "", "")),
        };
        self.objects
            .range((first, Bound::Unbounded))
            .take_while(move |((g, p, _, _), _)| *g == group && *p == plural)
            .filter(move |((_, _, ns, _), _)| namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v)
    }

    /// Creates `object` in `namespace`.
    ///
    /// # Errors
    ///
    /// `409 AlreadyExists`, or `422 Invalid` without a name.
    pub fn create(
        &mut self,
        resource: &Resource,
        namespace: &str,
        mut object: Value,
    ) -> Result<Value, ApiError> {
        if !object.is_object() {
            return Err(ApiError::new(
                400,
                "BadRequest",
                "the body is not an object",
            ));
        }
        let family = family(resource);
        let mut name = name_of(&object).to_owned();
        if name.is_empty() {
            let Some(prefix) = object["metadata"]["generateName"].as_str() else {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "metadata.name: Required value",
                ));
            };
            name = format!("{prefix}{:05x}", self.uid + 0x10000);
        }
        if self.objects.contains_key(&key(&family, namespace, &name)) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!(
                    "{}.{} \"{name}\" already exists",
                    resource.plural, resource.group
                ),
            ));
        }
        self.rv += 1;
        self.uid += 1;
        if resource.status == StatusMode::Pruned
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        let metadata = &mut object["metadata"];
        metadata["name"] = json!(name);
        if resource.namespaced {
            metadata["namespace"] = json!(namespace);
        }
        metadata["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", self.uid));
        metadata["resourceVersion"] = json!(self.rv.to_string());
        metadata["generation"] = json!(1);
        metadata["creationTimestamp"] = json!(now());
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind);
        self.objects
            .insert(key(&family, namespace, &name), object.clone());
        self.record("ADDED", &family, namespace, &object);
        Ok(object)
    }

    /// Replaces `part` of the object `name` with `object`'s.
    ///
    /// # Errors
    ///
    /// `404 NotFound`, or `409 Conflict` when `object` names an older resourceVersion.
    pub fn replace(
        &mut self,
        resource: &Resource,
        namespace: &str,
        name: &str,
        object: Value,
        part: Part,
    ) -> Result<Value, ApiError> {
        let family = family(resource);
        let Some(old) = self.objects.get(&key(&family, namespace, name)).cloned() else {
            return Err(ApiError::not_found(resource, name));
        };
        if let Some(rv) = object["metadata"]["resourceVersion"].as_str()
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {}.{} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    resource.plural, resource.group
                ),
            ));
        }
        let mut new = match part {
            Part::Status => {
                let mut new = old.clone();
                new["status"] = object.get("status").cloned().unwrap_or(Value::Null);
                new
            }
            Part::Main => {
                let mut new = object;
                match resource.status {
                    StatusMode::Subresource => {
                        new["status"] = old.get("status").cloned().unwrap_or(Value::Null);
                    }
                    StatusMode::Pruned => {
                        if let Some(map) = new.as_object_mut() {
                            map.remove("status");
                        }
                    }
                    StatusMode::Field => {}
                }
                new
            }
        };
        if new.get("status").is_some_and(Value::is_null)
            && let Some(map) = new.as_object_mut()
        {
            map.remove("status");
        }
        // The server owns these.
        for field in [
            "uid",
            "creationTimestamp",
            "generation",
            "name",
            "namespace",
        ] {
            if let Some(value) = old["metadata"].get(field) {
                new["metadata"][field] = value.clone();
            }
        }
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        if spec_of(&new) != spec_of(&old) {
            new["metadata"]["generation"] = json!(generation + 1);
        }
        if new == old {
            return Ok(old);
        }
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        new["apiVersion"] = json!(resource.api_version());
        new["kind"] = json!(resource.kind);
        self.objects
            .insert(key(&family, namespace, name), new.clone());
        self.record("MODIFIED", &family, namespace, &new);
        Ok(new)
    }

    /// Merges `patch` into `part` of the object `name`, creating it first
    /// when `create` (server-side apply) and it does not exist.
    ///
    /// # Errors
    ///
    /// As [`Store::replace`] and [`Store::create`].
    pub fn patch(
        &mut self,
        resource: &Resource,
        namespace: &str,
        name: &str,
        patch: &Value,
        part: Part,
        create: bool,
    ) -> Result<Value, ApiError> {
        let Some(mut object) = self.get(resource, namespace, name) else {
            if create && part == Part::Main {
                let mut object = patch.clone();
                object["metadata"]["name"] = json!(name);
                return self.create(resource, namespace, object);
            }
            return Err(ApiError::not_found(resource, name));
        };
        merge(&mut object, patch);
        // A patch never conflicts unless it names a resourceVersion itself.
        if patch["metadata"].get("resourceVersion").is_none()
            && let Some(map) = object["metadata"].as_object_mut()
        {
            map.remove("resourceVersion");
        }
        self.replace(resource, namespace, name, object, part)
    }

    /// Deletes the object `name`, returning it.
    ///
    /// # Errors
    ///
    /// `404 NotFound`.
    pub fn delete(
        &mut self,
        resource: &Resource,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let family = family(resource);
        let Some(mut object) = self.objects.remove(&key(&family, namespace, name)) else {
            return Err(ApiError::not_found(resource, name));
        };
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record("DELETED", &family, namespace, &object);
        Ok(object)
    }

    /// The changes after `from` (to replay) and a receiver for the ones to
    /// come, or `None` when `from` is older than the history.
    #[must_use]
    pub fn watch_from(&self, from: u64) -> Option<(Vec<Change>, broadcast::Receiver<Arc<Change>>)> {
        if from < self.floor {
            return None;
        }
        let replay = self
            .history
            .iter()
            .filter(|c| matches!(c, Change::Object { rv, .. } if *rv > from))
            .cloned()
            .collect();
        Some((replay, self.changes.subscribe()))
    }
}
