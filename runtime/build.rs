//! Captures the git commit Herald is built from as `HERALD_BUILD_COMMIT`
//! (see `src/build.rs`).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HERALD_COMMIT");
    let commit = match std::env::var("HERALD_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => {
            // Built again when HEAD moves; only paths that exist are watched,
            // since a missing one would rebuild every time.
            for path in ["HEAD", "packed-refs"]
                .into_iter()
                .filter_map(|p| git(&["rev-parse", "--git-path", p]))
                .chain(
                    git(&["symbolic-ref", "-q", "HEAD"])
                        .and_then(|r| git(&["rev-parse", "--git-path", &r])),
                )
            {
                if Path::new(&path).exists() {
                    let path =
                        std::fs::canonicalize(&path).map_or(path, |p| p.display().to_string());
                    println!("cargo:rerun-if-changed={path}");
                }
            }
            git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo:rustc-env=HERALD_BUILD_COMMIT={commit}");
}
