//! Stamps the git commit into the binary for `roomcast --version`.
//!
//! `ROOMCAST_COMMIT` set in the build environment wins (for builds without a checkout, such as
//! a container build given `--build-arg`); else `git rev-parse` is asked; without git or a
//! checkout the variable is left unset and the binary says `unknown`. A build never fails here.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=ROOMCAST_COMMIT");
    let commit = std::env::var("ROOMCAST_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit);
    if let Some(commit) = commit {
        println!("cargo:rustc-env=ROOMCAST_COMMIT={}", commit.trim());
    }
}

/// The short id of `HEAD`, and the files to watch so a new commit rebuilds the stamp.
fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // HEAD names a branch; the branch's ref (loose or packed) moves on every commit. In a
    // worktree HEAD lives in the worktree's git dir and the refs in the common one.
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = git(&["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(packed) = git(&["rev-parse", "--git-path", "packed-refs"]) {
        if PathBuf::from(&packed).exists() {
            println!("cargo:rerun-if-changed={packed}");
        }
    }
    Some(commit)
}

/// `git <args>`'s trimmed output, or `None` when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    if text.is_empty() {
        return None;
    }
    // --git-path answers relative to the current directory: make it absolute.
    if args.first() == Some(&"rev-parse") && args.get(1) == Some(&"--git-path") {
        return Some(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(text)
                .display()
                .to_string(),
        );
    }
    Some(text)
}
