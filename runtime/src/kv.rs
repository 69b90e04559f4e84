//! Read, decide, compare-and-set: the one way Herald updates a shared
//! key-value entry (dedupe windows, pacing, applied commit statuses), so that
//! replicas racing on one key each decide on what the other wrote.

use async_nats::jetstream::kv;
use bytes::Bytes;

/// What a decision does with the entry.
#[derive(Debug)]
pub enum Step<T, R> {
    /// Write `T` (only if nobody wrote since it was read), then return `R`.
    Write(T, R),
    /// Leave the entry as it is and return `R`.
    Keep(R),
}

/// Why an update did not happen.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The bucket could not be read or written.
    #[error("key-value bucket unavailable: {0}")]
    Unavailable(String),
    /// A stored value is not a `T`.
    #[error("key-value entry is corrupt: {0}")]
    Corrupt(#[from] prost::DecodeError),
    /// Other writers won every race.
    #[error("key-value entry too contended")]
    Contended,
}

/// Reads `key` (a missing or deleted entry is `None`), lets `decide` choose,
/// and writes with compare-and-set on the revision read; a lost race decides
/// again on the winner's value, up to `races` times.
///
/// # Errors
///
/// [`KvError`] when the bucket fails, a value is corrupt, or races never end.
pub async fn update<T, R>(
    store: &kv::Store,
    key: &str,
    races: usize,
    mut decide: impl FnMut(Option<&T>) -> Step<T, R>,
) -> Result<R, KvError>
where
    T: prost::Message + Default,
{
    let unavailable = |e: &dyn std::fmt::Display| KvError::Unavailable(e.to_string());
    for _ in 0..races.max(1) {
        let entry = store
            .entry(key)
            .await
            .map_err(|e| unavailable(&e))?
            .filter(|e| e.operation == kv::Operation::Put);
        let current = match &entry {
            Some(entry) => Some(T::decode(entry.value.clone())?),
            None => None,
        };
        let (value, result) = match decide(current.as_ref()) {
            Step::Keep(result) => return Ok(result),
            Step::Write(value, result) => (Bytes::from(value.encode_to_vec()), result),
        };
        let written = match &entry {
            Some(entry) => match store.update(key, value, entry.revision).await {
                Ok(_) => true,
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => false,
                Err(e) => return Err(unavailable(&e)),
            },
            None => match store.create(key, value).await {
                Ok(_) => true,
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => false,
                Err(e) => return Err(unavailable(&e)),
            },
        };
        if written {
            return Ok(result);
        }
    }
    Err(KvError::Contended)
}

/// As [`update`], for a key that is most likely not there yet: decides on
/// `None` and writes at once, with compare-and-set on "no entry" (revision
/// 0), saving the read. When the entry is there after all (the write is
/// refused: it exists, or a delete left its marker), it reads and decides
/// again as [`update`] does, so the outcome is the same as [`update`]'s;
/// only the cost differs: one round trip for an absent key, one more than
/// [`update`] for a present one.
///
/// # Errors
///
/// [`KvError`] when the bucket fails, a value is corrupt, or races never end.
pub async fn update_presuming_absent<T, R>(
    store: &kv::Store,
    key: &str,
    races: usize,
    mut decide: impl FnMut(Option<&T>) -> Step<T, R>,
) -> Result<R, KvError>
where
    T: prost::Message + Default,
{
    let (value, result) = match decide(None) {
        // What is kept might differ once the entry is read.
        Step::Keep(_) => return update(store, key, races, decide).await,
        Step::Write(value, result) => (Bytes::from(value.encode_to_vec()), result),
    };
    match store.update(key, value, 0).await {
        Ok(_) => Ok(result),
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
            update(store, key, races.saturating_sub(1), decide).await
        }
        Err(e) => Err(KvError::Unavailable(e.to_string())),
    }
}
