//! `herald get alerts|providers` and `herald status`: what Herald is doing,
//! read from the catalog and from JetStream, for people (a table) or scripts
//! (`-o json|yaml`). Both only read; they fail fast when NATS cannot be
//! reached instead of waiting for it.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use async_nats::jetstream;
use herald_runtime::nats::NatsArgs;

mod get;
mod status;

pub use get::{Kind, get};
pub use status::status;

/// How long a read command waits for NATS to answer, a connection or a request.
const NATS_WAIT: Duration = Duration::from_secs(5);

/// Runs a read command's `work` on a runtime of its own; an error is printed
/// after `command` and fails.
pub fn run_blocking(
    command: &str,
    work: impl Future<Output = anyhow::Result<ExitCode>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("herald: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("herald {command}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A client for a read command: a named connection that fails at once when
/// no server answers, and its JetStream context (in `--jetstream-domain`).
///
/// # Errors
///
/// When no server of `--nats-url` answers (the message holds no credential).
pub async fn connect(
    nats: &NatsArgs,
    name: &str,
) -> anyhow::Result<(async_nats::Client, jetstream::Context)> {
    let options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(NATS_WAIT);
    let client = nats.connect_with(options).await?;
    let js = nats.context(NATS_WAIT, client.clone());
    Ok((client, js))
}
