//! The `Ready` condition and `observedGeneration` in an object's `status`,
//! written through its `/status` subresource.
//!
//! Only versions that serve `/status` have a status to write (Flux's
//! `v1beta2` Alert and Provider; `v1beta3` has none): the caller picks the
//! version from discovery (`ApiCapabilities::subresources`). Should it pick
//! one without, the one refused patch comes back as
//! [`StatusOutcome::NoStatus`], for the caller to never try that version
//! again.
//!
//! The object is read first and written only when the condition or the
//! generation changed, so an unchanged Ready costs one GET and no write.
//! Other conditions are kept as they are, and the write names the
//! resourceVersion it read, so that a condition another controller wrote
//! meanwhile is never lost (a conflict reads and decides again).

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use super::{api_code, truncate};

/// The condition type written.
const READY: &str = "Ready";

/// The most bytes of a condition's `message` Kubernetes accepts.
const MESSAGE_LIMIT: usize = 32 * 1024;

/// The most bytes of a condition's `reason` Kubernetes accepts.
const REASON_LIMIT: usize = 1024;

/// How many times a write that lost a race to another writer reads and
/// decides again.
const CONFLICT_RETRIES: usize = 3;

/// The `Ready` condition to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// `status: "True"` or `"False"`.
    pub ready: bool,
    /// A CamelCase word (`Succeeded`, `ProviderNotFound`); characters
    /// Kubernetes does not allow in a reason are left out, and an empty one
    /// becomes `Unknown`.
    pub reason: String,
    /// For people; cut to 32 KiB.
    pub message: String,
}

/// What [`StatusWriter::write_ready`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusOutcome {
    /// The status was written.
    Written,
    /// The status already said so for this generation: nothing was written.
    Unchanged,
    /// The object exists but its version serves no `/status`: do not try
    /// this version again.
    NoStatus,
    /// The object does not exist.
    Gone,
}

/// Writes the `Ready` condition of objects; cheap to clone.
#[derive(Clone)]
pub struct StatusWriter {
    client: kube::Client,
}

// === impl StatusWriter ===

impl StatusWriter {
    /// A writer using `client`.
    #[must_use]
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    /// Sets the `Ready` condition of the object `namespace/name` served as
    /// `resource` to `ready`, observed at `generation`, unless it says so
    /// already.
    ///
    /// # Errors
    ///
    /// When the API server refuses a read or the write (a 403 is also
    /// logged with the permission it needs), or another writer won
    /// every race.
    pub async fn write_ready(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        generation: i64,
        ready: &Ready,
    ) -> Result<StatusOutcome, kube::Error> {
        let api = Api::<DynamicObject>::namespaced_with(self.client.clone(), namespace, resource);
        let mut conflicts = 0;
        loop {
            let Some(object) = api.get_opt(name).await? else {
                return Ok(StatusOutcome::Gone);
            };
            let Some(status) = next_status(&object.data, generation, ready, Timestamp::now())
            else {
                return Ok(StatusOutcome::Unchanged);
            };
            let patch = json!({
                "metadata": {"resourceVersion": object.metadata.resource_version},
                "status": status,
            });
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(StatusOutcome::Written),
                Err(error) if api_code(&error) == Some(404) => {
                    return Ok(match api.get_opt(name).await? {
                        Some(_) => StatusOutcome::NoStatus,
                        None => StatusOutcome::Gone,
                    });
                }
                Err(error) if api_code(&error) == Some(409) && conflicts < CONFLICT_RETRIES => {
                    conflicts += 1;
                }
                Err(error) => {
                    if api_code(&error) == Some(403) {
                        tracing::warn!(
                            namespace,
                            name,
                            error = %error,
                            "Cannot write the Ready condition: Herald needs permission to patch {}/status in the {} group.",
                            resource.plural,
                            resource.group,
                        );
                    }
                    return Err(error);
                }
            }
        }
    }
}

/// The `status` to merge into `object` for `ready` at `generation`, or
/// `None` when it says so already. Other conditions are kept, and the Ready
/// condition's `lastTransitionTime` too unless its status changes.
fn next_status(object: &Value, generation: i64, ready: &Ready, now: Timestamp) -> Option<Value> {
    let status = object.get("status").unwrap_or(&Value::Null);
    let mut conditions = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let wanted = if ready.ready { "True" } else { "False" };
    let reason = condition_reason(&ready.reason);
    let message = truncate(&ready.message, MESSAGE_LIMIT, "…");
    let position = conditions.iter().position(|c| c["type"] == READY);
    let current = position.map(|i| &conditions[i]);
    if let Some(current) = current
        && current["status"] == wanted
        && current["reason"] == reason.as_str()
        && current["message"] == message.as_str()
        && current["observedGeneration"] == generation
        && status["observedGeneration"] == generation
    {
        return None;
    }
    let transition = current
        .filter(|c| c["status"] == wanted)
        .and_then(|c| c.get("lastTransitionTime"))
        .filter(|t| t.is_string())
        .cloned()
        .unwrap_or_else(|| json!(now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
    let condition = json!({
        "type": READY,
        "status": wanted,
        "observedGeneration": generation,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    });
    match position {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
    Some(json!({"observedGeneration": generation, "conditions": conditions}))
}

/// `reason` as Kubernetes accepts it in a condition
/// (`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`, at most 1024 bytes).
fn condition_reason(reason: &str) -> String {
    let kept: String = reason
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ',' | ':'))
        .skip_while(|c| !c.is_ascii_alphabetic())
        .take(REASON_LIMIT)
        .collect();
    let kept = kept.trim_end_matches([',', ':']);
    if kept.is_empty() {
        "Unknown".to_owned()
    } else {
        kept.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(ok: bool, reason: &str, message: &str) -> Ready {
        Ready {
            ready: ok,
            reason: reason.to_owned(),
            message: message.to_owned(),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    #[test]
    fn first_write_adds_the_condition() {
        let status = next_status(
            &json!({"spec": {}}),
            3,
            &ready(true, "Succeeded", "ok"),
            at("2025-01-02T03:04:05.678Z"),
        )
        .expect("a write");
        assert_eq!(
            status,
            json!({"observedGeneration": 3, "conditions": [{
                "type": "Ready", "status": "True", "observedGeneration": 3,
                "lastTransitionTime": "2025-01-02T03:04:05Z",
                "reason": "Succeeded", "message": "ok",
            }]})
        );
    }

    #[test]
    fn same_condition_and_generation_is_unchanged() {
        let now = at("2025-01-02T03:04:05Z");
        let wanted = ready(false, "ProviderNotFound", "no slack");
        let status = next_status(&json!({}), 2, &wanted, now).expect("a write");
        let object = json!({"status": status});
        assert_eq!(next_status(&object, 2, &wanted, now), None);
        assert!(
            next_status(&object, 3, &wanted, now).is_some(),
            "new generation"
        );
        let other = ready(false, "ProviderNotFound", "no teams");
        assert!(
            next_status(&object, 2, &other, now).is_some(),
            "new message"
        );
    }

    #[test]
    fn transition_time_kept_while_the_status_holds() {
        let object = json!({"status": {"observedGeneration": 1, "conditions": [
            {"type": "Reconciling", "status": "True", "reason": "Progressing", "message": ""},
            {"type": "Ready", "status": "False", "observedGeneration": 1,
             "lastTransitionTime": "2020-01-01T00:00:00Z", "reason": "Failed", "message": "a"},
        ]}});
        let now = at("2025-01-02T03:04:05Z");
        let same = next_status(&object, 2, &ready(false, "Failed", "b"), now).expect("write");
        assert_eq!(same["conditions"][0]["type"], "Reconciling", "others kept");
        assert_eq!(
            same["conditions"][1]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        let flipped = next_status(&object, 2, &ready(true, "Succeeded", ""), now).expect("write");
        assert_eq!(
            flipped["conditions"][1]["lastTransitionTime"],
            "2025-01-02T03:04:05Z"
        );
        assert_eq!(flipped["conditions"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn reasons_are_made_valid() {
        assert_eq!(condition_reason("Succeeded"), "Succeeded");
        assert_eq!(condition_reason("Provider not found!"), "Providernotfound");
        assert_eq!(condition_reason("42:Bad,"), "Bad");
        assert_eq!(condition_reason(""), "Unknown");
        assert_eq!(condition_reason("__"), "Unknown");
    }
}
