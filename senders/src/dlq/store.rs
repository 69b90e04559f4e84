//! Reading and deleting letters on HERALD_DEAD.

use super::*;

/// HERALD_DEAD.
pub(super) async fn dead_stream(js: &jetstream::Context) -> anyhow::Result<stream::Stream> {
    js.get_stream(names::DEAD_STREAM).await.map_err(|error| {
        anyhow::anyhow!(
            "cannot open stream {} (a sender creates it when it starts): {error}",
            names::DEAD_STREAM
        )
    })
}

/// The letter at `sequence`, `None` when there is none.
pub(super) async fn get(stream: &stream::Stream, sequence: u64) -> anyhow::Result<Option<Entry>> {
    match stream.get_raw_message(sequence).await {
        Ok(message) => Ok(Some(Entry::decode(
            message.sequence,
            message.subject.to_string(),
            message.payload,
            timestamp(message.time),
        ))),
        Err(error) if error.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(None),
        Err(error) => Err(anyhow::anyhow!(
            "cannot read sequence {sequence} of {}: {error}",
            names::DEAD_STREAM
        )),
    }
}

/// Deletes the letter at `sequence`; one already gone counts as deleted.
///
/// Without erasing: `Stream::delete_message` also overwrites the message on
/// disk, which makes each deletion cost milliseconds of stream time, and a
/// letter never holds a secret that would need it.
pub(super) async fn delete(
    js: &jetstream::Context,
    stream: &stream::Stream,
    sequence: u64,
) -> anyhow::Result<()> {
    let request = serde_json::json!({ "seq": sequence, "no_erase": true });
    let error = match js
        .request::<_, _, Response<stream::DeleteStatus>>(
            format!("STREAM.MSG.DELETE.{}", names::DEAD_STREAM),
            &request,
        )
        .await
    {
        Ok(Response::Ok(status)) if status.success => return Ok(()),
        Ok(Response::Ok(_)) => "JetStream did not delete it".to_owned(),
        Ok(Response::Err { error }) => error.to_string(),
        Err(error) => error.to_string(),
    };
    match get(stream, sequence).await {
        // Deleted meanwhile, by another replay or purge.
        Ok(None) => Ok(()),
        _ => Err(anyhow::anyhow!(
            "cannot delete sequence {sequence} of {}: {error}",
            names::DEAD_STREAM
        )),
    }
}

/// Every letter on `subject`, oldest first, up to the last one stored when
/// the scan began.
pub(super) async fn scan(stream: &stream::Stream, subject: &str) -> anyhow::Result<Vec<Entry>> {
    let last = stream
        .get_info()
        .await
        .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", names::DEAD_STREAM))?
        .state
        .last_sequence;
    let reader = stream
        .create_consumer(consumer::pull::OrderedConfig {
            description: Some("herald dlq".to_owned()),
            filter_subject: subject.to_owned(),
            deliver_policy: consumer::DeliverPolicy::All,
            ..consumer::pull::OrderedConfig::default()
        })
        .await
        .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", names::DEAD_STREAM))?;
    let name = reader.cached_info().name.clone();
    let mut entries = Vec::new();
    let read = if reader.cached_info().num_pending > 0 {
        read_ordered(stream, reader, subject, last, &mut entries).await
    } else {
        Ok(())
    };
    // An ephemeral consumer: the server would drop it soon anyway.
    if let Err(error) = stream.delete_consumer(&name).await {
        tracing::debug!(error = %error, consumer = %name, "Cannot delete a dead-letter reader.");
    }
    read.map(|()| entries)
}

/// Collects letters from an ordered consumer until none is left up to `last`.
pub(super) async fn read_ordered(
    stream: &stream::Stream,
    reader: consumer::Consumer<consumer::pull::OrderedConfig>,
    subject: &str,
    last: u64,
    entries: &mut Vec<Entry>,
) -> anyhow::Result<()> {
    let mut messages = reader
        .messages()
        .await
        .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", names::DEAD_STREAM))?;
    let mut idle = 0;
    loop {
        let message = match tokio::time::timeout(SCAN_IDLE, messages.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(error))) => {
                anyhow::bail!("cannot read {}: {error}", names::DEAD_STREAM)
            }
            Ok(None) => return Ok(()),
            Err(_) => {
                // Nothing came: is anything left to read?
                let after = entries.last().map_or(1, |e: &Entry| e.sequence + 1);
                match stream
                    .get_first_raw_message_by_subject(subject, after)
                    .await
                {
                    Ok(next) if next.sequence <= last => {}
                    Ok(_) => return Ok(()),
                    Err(error) if error.kind() == stream::RawMessageErrorKind::NoMessageFound => {
                        return Ok(());
                    }
                    Err(error) => {
                        anyhow::bail!("cannot read {}: {error}", names::DEAD_STREAM)
                    }
                }
                idle += 1;
                anyhow::ensure!(
                    idle < SCAN_MAX_IDLE,
                    "reading {} stalled after sequence {}",
                    names::DEAD_STREAM,
                    after - 1
                );
                continue;
            }
        };
        idle = 0;
        let info = message.info().map_err(|error| {
            anyhow::anyhow!("unexpected message on {}: {error}", names::DEAD_STREAM)
        })?;
        let (sequence, pending, published) = (info.stream_sequence, info.pending, info.published);
        if sequence > last {
            return Ok(());
        }
        entries.push(Entry::decode(
            sequence,
            message.subject.to_string(),
            message.payload.clone(),
            timestamp(published),
        ));
        if pending == 0 || sequence == last {
            return Ok(());
        }
    }
}

/// A JetStream time as a timestamp.
pub(super) fn timestamp(time: async_nats::datetime::DateTime) -> Timestamp {
    Timestamp::from_nanosecond(time.unix_timestamp_nanos()).unwrap_or(Timestamp::UNIX_EPOCH)
}
