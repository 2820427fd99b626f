//! Modules that live in git repositories: `github.com/org/repo:v1.2` names the repository
//! `https://github.com/org/repo` at tag (or branch) `v1.2`, or at a full commit hash. The tag is
//! resolved to its commit once and the checkout is kept by commit, so everyone who runs
//! `name:version` against the module pinned on chain runs the same bytes (the folder's
//! content hash is checked against the chain by the caller, with `Module::load_pinned`).
//!
//! A git module's build commands run on the provider's host, so where it comes from is
//! guarded:
//!
//! * [`GitPolicy`]: a provider names the repository hosts or owners (`github.com/lilypad-tech`)
//!   and the publishers it takes git modules from; anything else is refused
//!   ([`GitPolicy::check`]).
//! * The host in the name is never an IP address (in any form the resolver would take:
//!   `127.1`, `0x7f.0.0.1`) or a local-only name (`*.localhost`, `*.local`, `*.internal`, ...),
//!   and it must resolve to public addresses only; git then connects to the addresses checked
//!   (`http.curloptResolve`), so a second lookup cannot point it elsewhere.
//! * git follows no redirects (`http.followRedirects=false`), speaks only the base URL's
//!   protocol, and runs without the system's or the user's git configuration (no credential
//!   helpers, no filters such as LFS, whose servers a repository names).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use alloy::primitives::Address;
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
    /// The name's host may never be fetched from (an IP address or a local-only name).
    #[error("{name:?}: git modules are fetched only from public hosts named by DNS; {reason}")]
    ForbiddenHost { name: String, reason: String },
    /// The host resolved to an address that is not public.
    #[error("{name:?}: its host {host} resolves to {addr}, which is not a public address: refused")]
    PrivateAddress { name: String, host: String, addr: IpAddr },
    #[error("{name:?}: its host {host} does not resolve: {reason}")]
    Unresolved { name: String, host: String, reason: String },
    /// The provider's [`GitPolicy`] does not take this module.
    #[error(
        "{name:?} (published by {publisher}) is neither under a repository this provider allows \
         ({allowed}) nor from a publisher it allows: add its host or owner, or the publisher, to \
         the provider's git allow list"
    )]
    NotAllowed { name: String, publisher: String, allowed: String },
}

impl GitError {
    /// Network trouble may pass; a missing tag or repository will not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, GitError::Timeout { .. } | GitError::Git { action: "fetch", .. } | GitError::Unresolved { .. })
    }
}

/// Whether a module name names a git repository (it has a host part: `host.tld/...`).
pub fn is_git_name(name: &str) -> bool {
    name.split_once('/').is_some_and(|(host, rest)| host.contains('.') && !rest.is_empty())
}

/// Which git modules a provider takes. Empty: none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitPolicy {
    /// Repository prefixes, each a host (`github.com`) or a host and leading path components
    /// (`github.com/lilypad-tech`), matched whole components at a time, without regard to case.
    pub repos: Vec<String>,
    /// Publishers (the accounts that published the module on chain) whose git modules are taken
    /// from any public host.
    pub publishers: Vec<Address>,
}

impl GitPolicy {
    /// Whether the git module `name` published by `publisher` may be fetched and built here.
    /// The host rules ([`check_host`]) apply whatever the policy says.
    pub fn check(&self, name: &str, publisher: Address) -> Result<(), GitError> {
        check_host(name)?;
        let lower = name.to_ascii_lowercase();
        let under = |prefix: &String| {
            let p = prefix.trim_end_matches('/').to_ascii_lowercase();
            !p.is_empty() && (lower == p || lower.starts_with(&format!("{p}/")))
        };
        if self.repos.iter().any(under) || self.publishers.contains(&publisher) {
            return Ok(());
        }
        let allowed = if self.repos.is_empty() { "none".to_string() } else { self.repos.join(", ") };
        Err(GitError::NotAllowed { name: name.into(), publisher: publisher.to_string(), allowed })
    }
}

/// Local-only DNS suffixes (RFC 6761, 6762, 8375, and the `internal` TLD reserved for private
/// use), and reverse-lookup names.
const LOCAL_SUFFIXES: &[&str] = &["localhost", "local", "localdomain", "internal", "lan", "home.arpa", "arpa"];

/// A label the C resolver reads as part of an IPv4 address (`127`, `0x7f`, `0177`).
fn numeric_label(label: &str) -> bool {
    let hex = label.strip_prefix("0x").or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(h) => h.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// The host of a git module name, checked: a DNS name, not an IP address in any spelling, not
/// a local-only name, every label non-empty.
pub fn check_host(name: &str) -> Result<String, GitError> {
    if !is_git_name(name) || name.contains("..") {
        return Err(GitError::NotARepository { name: name.to_string() });
    }
    let forbidden = |reason: String| GitError::ForbiddenHost { name: name.into(), reason };
    let host = name.split('/').next().unwrap_or_default().to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Err(forbidden(format!("{host:?} has an empty label")));
    }
    if host.parse::<IpAddr>().is_ok() || labels.iter().all(|l| numeric_label(l)) {
        return Err(forbidden(format!("{host:?} is an IP address")));
    }
    if let Some(suffix) = LOCAL_SUFFIXES.iter().find(|s| host == **s || host.ends_with(&format!(".{s}"))) {
        return Err(forbidden(format!("{host:?} is a local-only name (.{suffix})")));
    }
    Ok(host)
}

/// Whether `ip` is a public unicast address: not loopback, private, shared (CGNAT),
/// link-local (cloud metadata), multicast, documentation, benchmarking or reserved; IPv6
/// forms that embed an IPv4 address (mapped, NAT64, 6to4) are judged by it.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2]));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || s[0..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible (deprecated)
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])) // discard
}

/// The addresses of `host`, all of them public, or an error naming the first that is not.
async fn resolve_public(name: &str, host: &str, port: u16) -> Result<Vec<IpAddr>, GitError> {
    let unresolved = |reason: String| GitError::Unresolved { name: name.into(), host: host.into(), reason };
    let addrs: Vec<IpAddr> = tokio::time::timeout(Duration::from_secs(30), tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| unresolved("the lookup took over 30 s".into()))?
        .map_err(|e| unresolved(e.to_string()))?
        .map(|a| a.ip())
        .collect();
    if addrs.is_empty() {
        return Err(unresolved("no addresses".into()));
    }
    if let Some(addr) = addrs.iter().find(|a| !is_public_ip(**a)) {
        return Err(GitError::PrivateAddress { name: name.into(), host: host.into(), addr: *addr });
    }
    Ok(addrs)
}

/// The base URL git modules are fetched under: `https://`, or `LILYPAD_GIT_BASE` (for mirrors
/// and tests, e.g. `file:///srv/git/`).
fn base_url() -> String {
    std::env::var("LILYPAD_GIT_BASE").unwrap_or_else(|_| DEFAULT_BASE.to_string())
}

const DEFAULT_BASE: &str = "https://";

/// The repository URL of a module name (see [`check_host`] for the names refused).
/// `LILYPAD_GIT_BASE` replaces `https://` (for mirrors and tests, e.g. `file:///srv/git/`).
pub fn repo_url(name: &str) -> Result<String, GitError> {
    check_host(name)?;
    Ok(format!("{}{name}", base_url()))
}

const TIMEOUT: Duration = Duration::from_secs(300);

/// How git is run for one module: its URL, the protocol it may speak and the addresses it
/// must connect to.
struct Remote {
    url: String,
    /// `https`, `http` or `file`: the only protocol git may use.
    protocol: String,
    /// `http.curloptResolve` entry pinning the checked addresses (default base only).
    resolve: Option<String>,
}

impl Remote {
    /// The remote of `name` under `base`: with the default base, its host is resolved here and
    /// must be public; a mirror named by `LILYPAD_GIT_BASE` is the operator's choice.
    async fn of(name: &str, base: &str) -> Result<Remote, GitError> {
        let host = check_host(name)?;
        let protocol = base.split_once("://").map(|(p, _)| p.to_ascii_lowercase()).unwrap_or_default();
        if !matches!(protocol.as_str(), "https" | "http" | "file") {
            return Err(GitError::NotARepository { name: format!("{base}{name} (only https, http and file URLs)") });
        }
        let resolve = if base == DEFAULT_BASE {
            let addrs = resolve_public(name, &host, 443).await?;
            let list: Vec<String> = addrs
                .iter()
                .map(|a| match a {
                    IpAddr::V4(v4) => v4.to_string(),
                    IpAddr::V6(v6) => format!("[{v6}]"),
                })
                .collect();
            Some(format!("{host}:443:{}", list.join(",")))
        } else {
            None
        };
        Ok(Remote { url: format!("{base}{name}"), protocol, resolve })
    }

    /// `-c` options for every git command of this remote.
    fn config(&self) -> Vec<String> {
        let mut c = vec![
            "http.followRedirects=false".to_string(),
            "protocol.allow=never".to_string(),
            format!("protocol.{}.allow=always", self.protocol),
            "core.hooksPath=/dev/null".to_string(),
            "submodule.recurse=false".to_string(),
        ];
        if let Some(r) = &self.resolve {
            c.push(format!("http.curloptResolve={r}"));
        }
        c.into_iter().flat_map(|o| ["-c".to_string(), o]).collect()
    }

    /// The remote at `url` as given (no host checks, no pinning): for [`resolve_commit`].
    fn at(url: &str) -> Remote {
        let protocol = url.split_once("://").map(|(p, _)| p.to_ascii_lowercase()).unwrap_or_else(|| "https".into());
        Remote { url: url.into(), protocol, resolve: None }
    }

    async fn git(&self, action: &'static str, dir: Option<&Path>, args: &[&str]) -> Result<String, GitError> {
        let config = self.config();
        let mut all: Vec<&str> = config.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        git(&self.url, action, dir, &all).await
    }
}

async fn git(url: &str, action: &'static str, dir: Option<&Path>, args: &[&str]) -> Result<String, GitError> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_ASKPASS", "/bin/false")
        .env("GIT_PROTOCOL_FROM_USER", "0")
        .env_remove("GIT_ALLOW_PROTOCOL")
        .env_remove("GIT_CONFIG_PARAMETERS")
        .env_remove("GIT_CONFIG_COUNT")
        .env_remove("GIT_SSL_NO_VERIFY")
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
/// branch of that name. git follows no redirects and speaks only the URL's protocol.
pub async fn resolve_commit(url: &str, version: &str) -> Result<String, GitError> {
    resolve_at(&Remote::at(url), version).await
}

async fn resolve_at(remote: &Remote, version: &str) -> Result<String, GitError> {
    if version.len() == 40 && version.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(version.to_ascii_lowercase());
    }
    let url = &remote.url;
    let refs = [format!("refs/tags/{version}"), format!("refs/tags/{version}^{{}}"), format!("refs/heads/{version}")];
    let listing = remote.git("ls-remote", None, &["ls-remote", url, &refs[0], &refs[1], &refs[2]]).await?;
    let find = |r: &str| listing.lines().find_map(|l| l.split_once('\t').filter(|(_, name)| *name == r).map(|(sha, _)| sha.to_string()));
    // an annotated tag's peeled commit first, then a lightweight tag, then a branch
    find(&refs[1]).or_else(|| find(&refs[0])).or_else(|| find(&refs[2])).ok_or_else(|| GitError::UnknownVersion {
        url: url.clone(),
        version: version.into(),
        stderr: "no such ref".into(),
    })
}

/// Fetches `name` at `version` into `cache/<name>/<commit>` (once; later calls reuse it) and
/// returns that folder, without its `.git`. The host rules of [`check_host`] apply, and with
/// the default base its addresses must be public; the caller checks the provider's
/// [`GitPolicy`] first.
pub async fn fetch_git_module(name: &str, version: &str, cache: &Path) -> Result<PathBuf, GitError> {
    fetch_from(&base_url(), name, version, cache).await
}

async fn fetch_from(base: &str, name: &str, version: &str, cache: &Path) -> Result<PathBuf, GitError> {
    let remote = Remote::of(name, base).await?;
    let url = remote.url.clone();
    let commit = resolve_at(&remote, version).await?;
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
        remote.git("init", Some(&tmp), &["init", "--quiet"]).await?;
        remote.git("fetch", Some(&tmp), &["fetch", "--quiet", "--no-recurse-submodules", "--depth", "1", &url, &commit]).await?;
        remote.git("checkout", Some(&tmp), &["-c", "advice.detachedHead=false", "checkout", "--quiet", "FETCH_HEAD"]).await?;
        let head = remote.git("rev-parse", Some(&tmp), &["rev-parse", "HEAD"]).await?;
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

        // fetched under a mirror base (what LILYPAD_GIT_BASE sets)
        let base = format!("file://{}/", root.path().display());
        let cache = tempfile::tempdir().unwrap();
        let dir = fetch_from(&base, "example.com/org/hello", "v1", cache.path()).await.unwrap();
        assert!(dir.ends_with(&commit));
        assert!(!dir.join(".git").exists(), "no .git: the folder's hash is the module's");
        let module = crate::Module::load(&dir).unwrap();
        // moving the tag later does not change what was fetched for the old commit
        std::fs::write(repo.join("extra.txt"), "x").unwrap();
        sh(&repo, &["add", "."]);
        sh(&repo, &["commit", "--quiet", "-m", "v2"]);
        sh(&repo, &["tag", "-f", "-a", "v1", "-m", "moved"]);
        let again = fetch_from(&base, "example.com/org/hello", &commit, cache.path()).await.unwrap();
        assert_eq!(crate::Module::load(&again).unwrap().cid(), module.cid(), "pinned by commit");
    }

    #[test]
    fn ip_literals_and_local_names_are_refused() {
        for name in [
            "127.0.0.1/org/repo",
            "10.0.0.5/org/repo",
            "169.254.169.254/latest/meta-data",
            "127.1/org/repo",
            "0x7f.0.0.1/org/repo",
            "0177.0.0.1/org/repo",
            "2130706433.0/x",
            "git.localhost/org/repo",
            "printer.local/org/repo",
            "gitea.internal/org/repo",
            "nas.home.arpa/org/repo",
            "1.0.0.127.in-addr.arpa/x",
            "Git.LocalHost/org/repo",
        ] {
            let e = check_host(name).unwrap_err();
            assert!(matches!(e, GitError::ForbiddenHost { .. }), "{name}: {e:?}");
            assert!(repo_url(name).is_err(), "{name}");
            assert!(e.to_string().contains("public hosts"), "{e}");
        }
        for name in ["github.com/org/repo", "gitlab.example.org/a/b", "1password.com/x/y", "a1.b2.io/c"] {
            assert_eq!(check_host(name).unwrap(), name.split('/').next().unwrap().to_ascii_lowercase(), "{name}");
        }
    }

    #[test]
    fn only_public_addresses_pass() {
        for bad in [
            "127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254", "100.64.0.1",
            "0.0.0.0", "255.255.255.255", "224.0.0.1", "192.0.2.1", "198.18.0.1", "::1", "::", "fd00::1", "fe80::1",
            "ff02::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1", "64:ff9b::a00:1", "2002:7f00:1::", "2001:db8::1",
        ] {
            assert!(!is_public_ip(bad.parse().unwrap()), "{bad}");
        }
        for good in ["140.82.112.3", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:140.82.112.3", "64:ff9b::808:808"] {
            assert!(is_public_ip(good.parse().unwrap()), "{good}");
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_a_private_address_is_refused_before_git_runs() {
        // `localhost` resolves to loopback everywhere; an IP literal is refused without a lookup.
        let e = resolve_public("x.example/org/repo", "localhost", 443).await.unwrap_err();
        assert!(matches!(e, GitError::PrivateAddress { .. }), "{e:?}");
        assert!(e.to_string().contains("not a public address"), "{e}");
        let cache = tempfile::tempdir().unwrap();
        let e = fetch_git_module("127.0.0.1/org/repo", "v1", cache.path()).await.unwrap_err();
        assert!(matches!(e, GitError::ForbiddenHost { .. }), "{e:?}");
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0, "nothing fetched");
    }

    #[test]
    fn the_policy_takes_allowed_hosts_owners_and_publishers_only() {
        let trusted = Address::repeat_byte(1);
        let stranger = Address::repeat_byte(2);
        let policy = GitPolicy { repos: vec!["github.com/lilypad-tech".into(), "git.example.org/".into()], publishers: vec![trusted] };
        policy.check("github.com/lilypad-tech/cowsay", stranger).unwrap();
        policy.check("GitHub.com/Lilypad-Tech/cowsay", stranger).unwrap();
        policy.check("git.example.org/anyone/x", stranger).unwrap();
        policy.check("gitlab.com/someone/x", trusted).unwrap();
        for name in ["github.com/lilypad-tech-evil/x", "github.com/other/x", "example.org/x/y"] {
            let e = policy.check(name, stranger).unwrap_err();
            assert!(matches!(e, GitError::NotAllowed { .. }), "{name}: {e:?}");
            assert!(e.to_string().contains("allow list"), "{e}");
        }
        // An allowed publisher still cannot name a private host.
        assert!(matches!(policy.check("10.0.0.1/x/y", trusted), Err(GitError::ForbiddenHost { .. })));
        // The empty policy takes nothing.
        assert!(GitPolicy::default().check("github.com/a/b", trusted).is_err());
    }

    /// A one-shot HTTP server on loopback answering every request with `response`; returns its
    /// port and a counter of requests it got.
    fn http_server(response: String) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { break };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(response.as_bytes());
            }
        });
        (port, hits)
    }

    #[tokio::test]
    async fn git_follows_no_redirect_to_another_host() {
        let (other, other_hits) = http_server("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into());
        let redirect = format!(
            "HTTP/1.1 302 Found\r\nLocation: http://localhost:{other}/evil/info/refs?service=git-upload-pack\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let (mirror, mirror_hits) = http_server(redirect);
        let cache = tempfile::tempdir().unwrap();
        let base = format!("http://127.0.0.1:{mirror}/");
        let e = fetch_from(&base, "example.com/org/repo", "v1", cache.path()).await.unwrap_err();
        assert!(matches!(e, GitError::Git { .. }), "{e:?}");
        assert!(mirror_hits.load(std::sync::atomic::Ordering::SeqCst) >= 1, "git asked the mirror");
        assert_eq!(other_hits.load(std::sync::atomic::Ordering::SeqCst), 0, "and did not follow its redirect: {e}");
    }
}
