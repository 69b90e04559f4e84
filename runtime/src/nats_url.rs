//! The servers and credentials of `--nats-url`.
//!
//! async-nats logs server addresses (its connector's debug logs print the
//! `Debug` of each URL) and ignores a URL's userinfo, so Herald takes the
//! credentials out of every URL, hands async-nats the bare addresses and
//! passes the credentials as connect options, and prints URLs only through
//! [`redact`].

/// Why Herald could not connect to NATS. No variant holds a credential.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A URL of `--nats-url` is not a NATS server URL.
    #[error("invalid NATS server URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// Two URLs of `--nats-url` carry different credentials.
    #[error(
        "the URLs of --nats-url carry different credentials ({first} and {second}); \
         give the same user and password (or token) in each, or in one only"
    )]
    MixedCredentials { first: String, second: String },
    /// The `--nats-creds` file cannot be read.
    #[error("cannot use the NATS credentials file {}: {error}", path.display())]
    CredentialsFile {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    /// No server of the list answered (or the server refused the login).
    // The message already ends with async-nats' own, which repeats its
    // cause: not exposed as a source, so that a printed chain says it once.
    #[error("cannot connect to NATS at {servers}: {error}")]
    Connect {
        servers: String,
        error: async_nats::ConnectError,
    },
}

/// What a NATS URL's userinfo means: `user:password`, or a lone token.
#[derive(Clone, PartialEq, Eq)]
enum Credentials {
    UserPassword { user: String, password: String },
    Token(String),
}

/// The servers of a `--nats-url` list, without their credentials.
pub(crate) struct Servers {
    pub(crate) addrs: Vec<async_nats::ServerAddr>,
    credentials: Option<Credentials>,
    /// The list as it may be printed.
    pub(crate) redacted: String,
}

impl Servers {
    /// Splits the comma-separated `urls`, takes the userinfo out of each
    /// (the same in every URL that has one) and parses what remains.
    pub(crate) fn parse(urls: &str) -> Result<Self, ConnectError> {
        let mut addrs = Vec::new();
        let mut credentials: Option<(Credentials, String)> = None;
        for raw in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let shown = redact(raw);
            let invalid = |reason: String| ConnectError::InvalidUrl {
                url: shown.clone(),
                reason,
            };
            let with_scheme = if raw.contains("://") {
                raw.to_owned()
            } else {
                format!("nats://{raw}")
            };
            // `url`'s errors never quote the input.
            let mut url = url::Url::parse(&with_scheme).map_err(|e| invalid(e.to_string()))?;
            if let Some(found) = url_credentials(&url) {
                match &credentials {
                    Some((first, first_url)) if *first != found => {
                        return Err(ConnectError::MixedCredentials {
                            first: first_url.clone(),
                            second: shown,
                        });
                    }
                    Some(_) => {}
                    None => credentials = Some((found, shown.clone())),
                }
                url.set_username("")
                    .and_then(|()| url.set_password(None))
                    .map_err(|()| invalid("cannot remove its credentials".to_owned()))?;
            }
            let addr = url
                .as_str()
                .parse::<async_nats::ServerAddr>()
                .map_err(|e| invalid(e.to_string()))?;
            addrs.push(addr);
        }
        if addrs.is_empty() {
            return Err(ConnectError::InvalidUrl {
                url: format!("{urls:?}"),
                reason: "no server URL given".to_owned(),
            });
        }
        Ok(Self {
            addrs,
            credentials: credentials.map(|(c, _)| c),
            redacted: redact(urls),
        })
    }

    /// `options` with the URLs' credentials.
    pub(crate) fn apply(&self, options: async_nats::ConnectOptions) -> async_nats::ConnectOptions {
        match self.credentials.clone() {
            Some(Credentials::UserPassword { user, password }) => {
                options.user_and_password(user, password)
            }
            Some(Credentials::Token(token)) => options.token(token),
            None => options,
        }
    }
}

/// The userinfo of `url`, percent-decoded, as NATS reads it: a user with a
/// password is a user and password, a user alone is a token.
fn url_credentials(url: &url::Url) -> Option<Credentials> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = decode(url.username());
    match url.password() {
        Some(password) => Some(Credentials::UserPassword {
            user,
            password: decode(password),
        }),
        None if user.is_empty() => None,
        None => Some(Credentials::Token(user)),
    }
}

/// `urls` (one URL or a comma-separated list) fit to print: a password is
/// replaced by `***` (`nats://user:***@host:4222`), and so is a lone user,
/// which NATS reads as a token (`nats://***@host:4222`).
#[must_use]
pub fn redact(urls: &str) -> String {
    urls.split(',')
        .map(|raw| {
            let Some(at) = raw.rfind('@') else {
                return raw.to_owned();
            };
            let start = raw.find("://").map_or(0, |i| i + 3);
            if start > at {
                return raw.to_owned();
            }
            let userinfo = &raw[start..at];
            let shown = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".to_owned(),
            };
            format!("{}{shown}{}", &raw[..start], &raw[at..])
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_urls_and_become_options() {
        let servers = Servers::parse("nats://u:p%40ss@a:4222, b:4223").unwrap();
        let shown: Vec<String> = servers.addrs.iter().map(|a| format!("{a:?}")).collect();
        assert!(
            shown
                .iter()
                .all(|a| !a.contains("p@ss") && !a.contains("\"u\"")),
            "{shown:?}"
        );
        assert_eq!(servers.addrs.len(), 2);
        assert_eq!(servers.addrs[1].port(), 4223);
        assert!(
            servers.credentials
                == Some(Credentials::UserPassword {
                    user: "u".to_owned(),
                    password: "p@ss".to_owned()
                })
        );
        assert_eq!(servers.redacted, "nats://u:***@a:4222, b:4223");

        let token = Servers::parse("nats://s3cret@a").unwrap();
        assert!(token.credentials == Some(Credentials::Token("s3cret".to_owned())));
        assert_eq!(token.redacted, "nats://***@a");

        let bare = Servers::parse("nats://a:4222").unwrap();
        assert!(bare.credentials.is_none());
    }

    #[test]
    fn different_credentials_are_refused_without_showing_them() {
        for urls in [
            "nats://u:Pw1x@a,nats://u:Pw2x@b",
            "nats://u:Pw1x@a,nats://Pw2x@b",
        ] {
            let err = Servers::parse(urls).err().unwrap().to_string();
            assert!(err.contains("different credentials"), "{err}");
            assert!(!err.contains("Pw1x") && !err.contains("Pw2x"), "{err}");
        }
        // The same credentials twice, or once, are fine.
        assert!(Servers::parse("nats://u:one@a,nats://u:one@b,nats://c").is_ok());
    }

    #[test]
    fn invalid_urls_are_named_without_their_secret() {
        for urls in ["nats://u:s3cret@a:notaport", "nats://u:s3cret@", " , "] {
            let err = Servers::parse(urls).err().unwrap().to_string();
            assert!(err.contains("invalid NATS server URL"), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn redacts_passwords_and_tokens() {
        let cases = [
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            ("nats://user:pw@host:4222", "nats://user:***@host:4222"),
            ("tls://tok@host", "tls://***@host"),
            ("user:p@w@host", "user:***@host"),
            ("nats://a:1,nats://u:p@b:2", "nats://a:1,nats://u:***@b:2"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact(url), shown);
        }
    }
}
