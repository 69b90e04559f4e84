//! For tests that run the `herald` binary as a process: a free port, waiting
//! for its readiness, and a SIGTERM.

/// A loopback port nothing listens on now.
///
/// # Panics
///
/// When no port can be had.
#[must_use]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Waits until `/readyz` on the admin port answers 200.
///
/// # Panics
///
/// When it does not within the harness' patience.
pub async fn wait_ready(admin_port: u16, what: &str) {
    let http = reqwest::Client::new();
    crate::eventually(&format!("{what} is ready"), || async {
        let response = http
            .get(format!("http://127.0.0.1:{admin_port}/readyz"))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
}

/// Sends SIGTERM to the process `pid`.
///
/// # Panics
///
/// When `kill` fails.
pub fn sigterm(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}: {status}");
}
