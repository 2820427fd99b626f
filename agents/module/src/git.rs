//! Modules that live in git repositories: `github.com/org/repo:v1.2` names the repository
//! `https://github.com/org/repo` at tag (or branch) `v1.2`, or at a full commit hash. The tag is
//! resolved to its commit once and the checkout is kept by commit, so everyone who runs
//! `name:version` against the module pinned on chain runs the same bytes (the folder's
//! content hash is checked against the chain by the caller, with `Module::load_pinned`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// Fetching a module from git failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{name:?} is not a repository path (like github.com/org/repo)")]
    NotARepository { name: String },
    #[error("git is not installed (needed for modules in git repositories): {0}")]
    NoGit(std::io::Error),
    #[error("{url} has no tag or branch {version:?} (git said: {stderr})")]
    UnknownVersion { url: String, version: String, stderr: String },
    #[error("git {action} for {url} failed: {stderr}")]
    Git { url: String, action: &'static str, stderr: String },
    #[error("git {action} for {url} took longer than {secs} s")]
    Timeout { url: String, action: &'static str, secs: u64 },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl GitError {
    /// Network trouble may pass; a missing tag or repository will not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, GitError::Timeout { .. } | GitError::Git { action: "fetch", .. })
    }
}

/// Whether a module name names a git repository (it has a host part: `host.tld/...`).
pub fn is_git_name(name: &str) -> bool {
    name.split_once('/').is_some_and(|(host, rest)| host.contains('.') && !rest.is_empty())
}

/// The repository URL of a module name. `LILYPAD_GIT_BASE` replaces `https://` (for mirrors
/// and tests, e.g. `file:///srv/git/`).
pub fn repo_url(name: &str) -> Result<String, GitError> {
    if !is_git_name(name) || name.contains("..") {
        return Err(GitError::NotARepository { name: name.to_string() });
    }
    let base = std::env::var("LILYPAD_GIT_BASE").unwrap_or_else(|_| "https://".to_string());
    Ok(format!("{base}{name}"))
}

const TIMEOUT: Duration = Duration::from_secs(300);

async fn git(url: &str, action: &'static str, dir: Option<&Path>, args: &[&str]) -> Result<String, GitError> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = tokio::time::timeout(TIMEOUT, cmd.output())
        .await
        .map_err(|_| GitError::Timeout { url: url.into(), action, secs: TIMEOUT.as_secs() })?
        .map_err(GitError::NoGit)?;
    if !out.status.success() {
        return Err(GitError::Git { url: url.into(), action, stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The commit `version` names in `url`: a full 40-hex commit as is, else the tag (peeled) or
/// branch of that name.
pub async fn resolve_commit(url: &str, version: &str) -> Result<String, GitError> {
    if version.len() == 40 && version.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(version.to_ascii_lowercase());
    }
    let refs = [format!("refs/tags/{version}"), format!("refs/tags/{version}^{{}}"), format!("refs/heads/{version}")];
    let listing = git(url, "ls-remote", None, &["ls-remote", url, &refs[0], &refs[1], &refs[2]]).await?;
    let find = |r: &str| listing.lines().find_map(|l| l.split_once('\t').filter(|(_, name)| *name == r).map(|(sha, _)| sha.to_string()));
    // an annotated tag's peeled commit first, then a lightweight tag, then a branch
    find(&refs[1]).or_else(|| find(&refs[0])).or_else(|| find(&refs[2])).ok_or_else(|| GitError::UnknownVersion {
        url: url.into(),
        version: version.into(),
        stderr: "no such ref".into(),
    })
}

/// Fetches `name` at `version` into `cache/<name>/<commit>` (once; later calls reuse it) and
/// returns that folder, without its `.git`.
pub async fn fetch_git_module(name: &str, version: &str, cache: &Path) -> Result<PathBuf, GitError> {
    let url = repo_url(name)?;
    let commit = resolve_commit(&url, version).await?;
    let dir = cache.join(name).join(&commit);
    if dir.join(crate::SPEC_FILE).exists() {
        return Ok(dir);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GitError::Io { path, source }
    };
    let parent = dir.parent().unwrap_or(cache);
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = parent.join(format!(".{commit}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let result = async {
        git(&url, "init", Some(&tmp), &["init", "--quiet"]).await?;
        git(&url, "fetch", Some(&tmp), &["fetch", "--quiet", "--depth", "1", &url, &commit]).await?;
        git(&url, "checkout", Some(&tmp), &["-c", "advice.detachedHead=false", "checkout", "--quiet", "FETCH_HEAD"]).await?;
        let head = git(&url, "rev-parse", Some(&tmp), &["rev-parse", "HEAD"]).await?;
        if head.trim() != commit {
            return Err(GitError::Git { url: url.clone(), action: "checkout", stderr: format!("got {} instead of {commit}", head.trim()) });
        }
        std::fs::remove_dir_all(tmp.join(".git")).map_err(io(&tmp))?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        // another process got there first
        Err(_) if dir.join(crate::SPEC_FILE).exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => Err(GitError::Io { path: dir, source: e }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn names_with_a_host_are_repositories() {
        assert!(is_git_name("github.com/org/repo"));
        assert!(!is_git_name("lilysay"));
        assert!(!is_git_name("org/repo"));
        assert!(repo_url("lilysay").is_err());
    }

    #[tokio::test]
    async fn a_tag_is_pinned_to_its_commit_and_cached() {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("example.com/org/hello");
        std::fs::create_dir_all(&repo).unwrap();
        crate::init_module(&repo, "example.com/org/hello").unwrap();
        sh(&repo, &["init", "--quiet"]);
        sh(&repo, &["add", "."]);
        sh(&repo, &["commit", "--quiet", "-m", "v1"]);
        sh(&repo, &["tag", "-a", "v1", "-m", "v1"]);
        let commit = sh(&repo, &["rev-parse", "HEAD"]);
        let url = format!("file://{}/example.com/org/hello", root.path().display());

        assert_eq!(resolve_commit(&url, "v1").await.unwrap(), commit, "annotated tag peeled to its commit");
        assert_eq!(resolve_commit(&url, "main").await.unwrap(), commit, "a branch");
        assert!(matches!(resolve_commit(&url, "v9").await, Err(GitError::UnknownVersion { .. })));

        // fetch through LILYPAD_GIT_BASE (set only in this test's process for this call)
        std::env::set_var("LILYPAD_GIT_BASE", format!("file://{}/", root.path().display()));
        let cache = tempfile::tempdir().unwrap();
        let dir = fetch_git_module("example.com/org/hello", "v1", cache.path()).await.unwrap();
        assert!(dir.ends_with(&commit));
        assert!(!dir.join(".git").exists(), "no .git: the folder's hash is the module's");
        let module = crate::Module::load(&dir).unwrap();
        // moving the tag later does not change what was fetched for the old commit
        std::fs::write(repo.join("extra.txt"), "x").unwrap();
        sh(&repo, &["add", "."]);
        sh(&repo, &["commit", "--quiet", "-m", "v2"]);
        sh(&repo, &["tag", "-f", "-a", "v1", "-m", "moved"]);
        let again = fetch_git_module("example.com/org/hello", &commit, cache.path()).await.unwrap();
        assert_eq!(crate::Module::load(&again).unwrap().cid(), module.cid(), "pinned by commit");
        std::env::remove_var("LILYPAD_GIT_BASE");
    }
}
