//! A second `nats-server` (not Herald's own) for the `nats` provider to
//! publish to, configured for one way of authenticating: a username and
//! password, a token, nkey users, or operator mode with JWTs (a `.creds`
//! file). The operator, account and user keys are made here and the JWTs
//! signed here with the `nkeys` crate, as `nsc` would. Killed on drop.

use std::time::Duration;

use base64::Engine as _;
use herald_runtime::local_nats::find_binary;
use nkeys::KeyPair;
use serde_json::json;

use crate::nats_server::{ServerProcess, free_ports};

/// How clients authenticate to the server.
pub enum AuthMode {
    /// None.
    Open,
    UserPassword {
        user: String,
        password: String,
    },
    Token(String),
    /// Nkey users: the user's seed.
    Nkey {
        seed: String,
    },
    /// Operator mode: a user's `.creds` file (its JWT and seed).
    Creds {
        creds: String,
    },
}

/// The server, and what a client needs to be let in.
pub struct AuthNats {
    server: ServerProcess,
    binary: std::path::PathBuf,
    _dir: tempfile::TempDir,
    pub mode: AuthMode,
}

impl AuthMode {
    /// A username and password.
    #[must_use]
    pub fn user_password(user: &str, password: &str) -> Self {
        Self::UserPassword {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    /// A token.
    #[must_use]
    pub fn token(token: &str) -> Self {
        Self::Token(token.to_owned())
    }

    /// Operator mode: a new operator, account and user, the user's
    /// `.creds` made when the server is.
    #[must_use]
    pub fn creds() -> Self {
        Self::Creds {
            creds: String::new(),
        }
    }

    /// A new nkey user.
    ///
    /// # Panics
    ///
    /// When the key cannot be encoded (never).
    #[must_use]
    pub fn nkey() -> Self {
        Self::Nkey {
            seed: KeyPair::new_user().seed().expect("user seed"),
        }
    }
}

/// base64url without padding, as JWTs are written.
fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A NATS JWT (v2) with `claims`, signed by `issuer`.
fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let header = b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = json!({
        "jti": format!("{name}-{}", &subject[..12]),
        "iat": jiff::Timestamp::now().as_second(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let claims = b64(claims.to_string().as_bytes());
    let signed = format!("{header}.{claims}");
    let signature = issuer.sign(signed.as_bytes()).expect("sign the JWT");
    format!("{signed}.{}", b64(&signature))
}

/// No limits, for accounts.
fn account_claims() -> serde_json::Value {
    json!({
        "limits": {
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1
        },
        "default_permissions": {"pub": {}, "sub": {}},
        "type": "account",
        "version": 2
    })
}

/// The server's operator-mode configuration and a user's `.creds` file.
fn operator_mode() -> (String, String) {
    let operator = KeyPair::new_operator();
    let system = KeyPair::new_account();
    let account = KeyPair::new_account();
    let user = KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "herald-test-operator",
        json!({"system_account": system.public_key(), "type": "operator", "version": 2}),
    );
    let system_jwt = jwt(&operator, &system.public_key(), "SYS", account_claims());
    let account_jwt = jwt(&operator, &account.public_key(), "flux", account_claims());
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        "notification-controller",
        json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2
        }),
    );
    let config = format!(
        "operator: \"{operator_jwt}\"\n\
         system_account: \"{}\"\n\
         resolver: MEMORY\n\
         resolver_preload: {{\n  \"{}\": \"{system_jwt}\"\n  \"{}\": \"{account_jwt}\"\n}}\n",
        system.public_key(),
        system.public_key(),
        account.public_key(),
    );
    let creds = format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n",
        user.seed().expect("user seed")
    );
    (config, creds)
}

/// JSON string literal (valid in the server's configuration language).
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

// === impl AuthNats ===

impl AuthNats {
    /// A server configured for `mode`.
    ///
    /// # Panics
    ///
    /// When no `nats-server` can be found or it does not start.
    pub async fn start(mode: AuthMode) -> Self {
        Self::start_with(mode, false).await
    }

    /// A server configured for `mode`, with JetStream when `jetstream` (its
    /// store kept across [`Self::kill9`] and [`Self::spawn`]).
    ///
    /// # Panics
    ///
    /// When no `nats-server` can be found or it does not start.
    pub async fn start_with(mut mode: AuthMode, jetstream: bool) -> Self {
        crate::init();
        let binary = find_binary()
            .unwrap_or_else(|e| panic!("the nats provider tests need a nats-server: {e:#}"));
        let dir = tempfile::tempdir().expect("temp dir");
        let mut extra = match &mut mode {
            AuthMode::Open => String::new(),
            AuthMode::UserPassword { user, password } => format!(
                "authorization {{ users: [ {{ user: {}, password: {} }} ] }}\n",
                quoted(user),
                quoted(password)
            ),
            AuthMode::Token(token) => {
                format!("authorization {{ token: {} }}\n", quoted(token))
            }
            AuthMode::Nkey { seed } => {
                let user = KeyPair::from_seed(seed).expect("user seed");
                format!(
                    "authorization {{ users: [ {{ nkey: {} }} ] }}\n",
                    quoted(&user.public_key())
                )
            }
            AuthMode::Creds { creds } => {
                let (config, user_creds) = operator_mode();
                *creds = user_creds;
                config
            }
        };
        if jetstream {
            let store = dir.path().join("jetstream");
            extra.push_str(&format!(
                "jetstream {{ store_dir: {} }}\n",
                quoted(&store.display().to_string())
            ));
        }
        let ports = free_ports(2).expect("free ports");
        let server = ServerProcess::write(dir.path(), "flux-nats", ports[0], ports[1], &extra)
            .expect("write the server's configuration");
        let mut nats = Self {
            server,
            binary,
            _dir: dir,
            mode,
        };
        nats.spawn().await;
        nats
    }

    /// Kills it (as a crash would).
    pub async fn kill9(&mut self) {
        self.server.kill9().await;
    }

    /// Starts it (again).
    pub async fn spawn(&mut self) {
        self.server.spawn(&self.binary);
        self.wait_healthy().await;
    }

    async fn wait_healthy(&mut self) {
        let http = reqwest::Client::new();
        if let Err(error) = self
            .server
            .wait_healthy(&http, Duration::from_secs(20))
            .await
        {
            panic!("{error}{}", self.server.log_text());
        }
    }

    /// `nats://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.server.client_port)
    }

    /// Its log.
    #[must_use]
    pub fn log_text(&self) -> String {
        self.server.log_text()
    }

    /// A client let in the way the server expects.
    ///
    /// # Panics
    ///
    /// When it cannot connect.
    pub async fn client(&self) -> async_nats::Client {
        let options = async_nats::ConnectOptions::new().name("herald-test-subscriber");
        let options = match &self.mode {
            AuthMode::Open => options,
            AuthMode::UserPassword { user, password } => {
                options.user_and_password(user.clone(), password.clone())
            }
            AuthMode::Token(token) => options.token(token.clone()),
            AuthMode::Nkey { seed } => options.nkey(seed.clone()),
            AuthMode::Creds { creds } => options.credentials(creds).expect("creds"),
        };
        options
            .connect(self.url())
            .await
            .unwrap_or_else(|e| panic!("connect to the test server: {e}{}", self.log_text()))
    }

    /// How many messages clients published to it so far (`/varz`
    /// `in_msgs`).
    ///
    /// # Panics
    ///
    /// When the monitoring port does not answer.
    pub async fn messages_in(&self) -> u64 {
        let url = format!("http://127.0.0.1:{}/varz", self.server.http_port);
        let body = reqwest::get(url)
            .await
            .expect("varz")
            .bytes()
            .await
            .expect("varz body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("varz JSON");
        body["in_msgs"].as_u64().expect("in_msgs")
    }

    /// The names of the clients connected now (from `/connz`).
    ///
    /// # Panics
    ///
    /// When the monitoring port does not answer.
    pub async fn connection_names(&self) -> Vec<String> {
        let url = format!("http://127.0.0.1:{}/connz?auth=true", self.server.http_port);
        let body = reqwest::get(url)
            .await
            .expect("connz")
            .bytes()
            .await
            .expect("connz body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("connz JSON");
        body["connections"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}
