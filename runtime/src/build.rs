//! What this build of Herald is: its version and the commit it was built
//! from (`herald_build_info`, `herald --version`).

/// The version of the Herald crates.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The short git commit the build was made from: `HERALD_COMMIT` at build
/// time when set (a build without the repository, e.g. in a container),
/// else `git rev-parse --short HEAD`, else `unknown`.
pub const COMMIT: &str = env!("HERALD_BUILD_COMMIT");

/// `VERSION (commit COMMIT)`, what `herald --version` prints.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("HERALD_BUILD_COMMIT"),
    ")"
);
