//! Names and references: module names and versions (the rules of `ModuleDirectory.sol`), input
//! and environment variable names, and `name:version` references.

use std::fmt;
use std::str::FromStr;

use alloy::primitives::{keccak256, B256};

use crate::error::ReferenceError;

/// Longest module name (`ModuleDirectory.MAX_NAME_LENGTH`).
pub const MAX_NAME_LENGTH: usize = 128;
/// Longest module version (`ModuleDirectory.MAX_VERSION_LENGTH`).
pub const MAX_VERSION_LENGTH: usize = 64;
/// Longest input name.
pub const MAX_INPUT_NAME_LENGTH: usize = 64;

/// A module name as `ModuleDirectory._checkName` accepts it: 1-128 of `[A-Za-z0-9._/-]`, the
/// first one a letter or digit (`lilysay`, `github.com/org/repo`).
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LENGTH
        && b.iter().enumerate().all(|(i, &c)| {
            c.is_ascii_alphanumeric() || (i != 0 && matches!(c, b'.' | b'_' | b'-' | b'/'))
        })
}

/// A module version as `ModuleDirectory._checkVersion` accepts it: 1-64 of `[A-Za-z0-9._+-]`,
/// the first one a letter or digit (`0.1.0`, `v2`, `1.0.0+build.5`).
pub fn is_valid_version(version: &str) -> bool {
    let b = version.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_VERSION_LENGTH
        && b.iter().enumerate().all(|(i, &c)| {
            c.is_ascii_alphanumeric() || (i != 0 && matches!(c, b'.' | b'_' | b'-' | b'+'))
        })
}

/// An input name: `[A-Za-z][A-Za-z0-9_]*`, at most [`MAX_INPUT_NAME_LENGTH`] characters.
pub fn is_valid_input_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_INPUT_NAME_LENGTH
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_valid_env_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Environment variables a module may not set, by prefix (`*` at the end) or whole name, with
/// why. These are read by programs other than the module's own: the dynamic loader of any
/// process that inherits the container's environment, including OCI hooks that the container
/// runtime runs **on the host** (CVE-2025-23266: the NVIDIA toolkit's hook ran with the
/// container's `LD_PRELOAD`), and the GPU runtime, which decides from `NVIDIA_*` which devices and
/// driver capabilities a container gets (the provider assigns those per job, not the module).
pub const FORBIDDEN_ENV: &[(&str, &str)] = &[
    ("LD_*", "read by the dynamic loader (LD_PRELOAD, LD_AUDIT, LD_LIBRARY_PATH load code into every program, including host-side hooks that inherit the environment)"),
    ("DYLD_*", "the macOS loader's LD_* (same effect where it applies)"),
    ("NVIDIA_*", "read by the NVIDIA container runtime on the host to pick GPUs, driver capabilities and MIG devices; the provider sets these per job"),
    ("GCONV_PATH", "makes glibc load character-conversion modules (shared libraries) from a path it names"),
    ("GLIBC_TUNABLES", "glibc loader tunables (CVE-2023-4911)"),
];

/// Why `name` may not be set in a module's environment (see [`FORBIDDEN_ENV`]), or `None` if it
/// may. Compared without regard to case: no program needs a lower-case variant, and a runtime
/// that folds case must not be able to see one.
pub fn forbidden_env(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    FORBIDDEN_ENV.iter().find_map(|(pattern, why)| {
        let hit = match pattern.strip_suffix('*') {
            Some(prefix) => upper.starts_with(prefix),
            None => upper == *pattern,
        };
        hit.then_some(*why)
    })
}

/// The on-chain id of `name:version`: `keccak256(bytes("name:version"))`, as
/// `ModuleDirectory.moduleId` computes it.
pub fn module_id(name: &str, version: &str) -> B256 {
    keccak256(format!("{name}:{version}").as_bytes())
}

/// A module reference `name:version`, both parts checked like the module directory does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleRef {
    pub name: String,
    pub version: String,
}

impl ModuleRef {
    /// The on-chain module id (see [`module_id`]).
    pub fn id(&self) -> B256 {
        module_id(&self.name, &self.version)
    }
}

impl fmt::Display for ModuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.version)
    }
}

impl FromStr for ModuleRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_reference(s)
    }
}

/// Parses `name:version` (e.g. `lilysay:0.1.0`). Exactly one `:`; the name and the version must
/// be valid (see [`is_valid_name`], [`is_valid_version`]).
pub fn parse_reference(reference: &str) -> Result<ModuleRef, ReferenceError> {
    let Some((name, version)) = reference.split_once(':') else {
        return Err(ReferenceError::Malformed(reference.to_string()));
    };
    if version.contains(':') {
        return Err(ReferenceError::Malformed(reference.to_string()));
    }
    if !is_valid_name(name) {
        return Err(ReferenceError::InvalidName(name.to_string()));
    }
    if !is_valid_version(version) {
        return Err(ReferenceError::InvalidVersion(version.to_string()));
    }
    Ok(ModuleRef {
        name: name.to_string(),
        version: version.to_string(),
    })
}

/// One `/`-separated component of a Docker repository path: lower case, runs of separators
/// reduced to what Docker accepts (`.`, `_`, `__` or dashes), none at either end.
fn docker_component(component: &str) -> String {
    let mut out = String::with_capacity(component.len());
    let mut sep = String::new();
    for c in component.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_alphanumeric() {
            if !sep.is_empty() {
                if !out.is_empty() {
                    let ok =
                        sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-');
                    out.push_str(if ok { &sep } else { "-" });
                }
                sep.clear();
            }
            out.push(c);
        } else {
            sep.push(c);
        }
    }
    out
}

/// The Docker repository for a module name: `lilypad/<name>`, lower-cased and with separators
/// Docker would refuse replaced (two names may share a repository; tags tell them apart).
pub(crate) fn docker_repository(name: &str) -> String {
    let mut repo = String::from("lilypad");
    for part in name
        .split('/')
        .map(docker_component)
        .filter(|p| !p.is_empty())
    {
        repo.push('/');
        repo.push_str(&part);
    }
    repo
}

/// A Docker tag for a version: `+` (not allowed in tags) becomes `_`.
pub(crate) fn docker_tag_version(version: &str) -> String {
    version.replace('+', "_")
}

/// Longest Docker tag.
const MAX_DOCKER_TAG: usize = 128;

/// The Docker tag of a module version pinned by `spec_hash`: `<version>-<all 64 hex digits of
/// the hash>`, lower case, the version shortened if needed to fit Docker's 128 characters. The hash is the
/// whole identity (the folder it hashes names the module and version); the version is there for
/// people. Two modules whose names differ only by case share a repository
/// ([`docker_repository`]) but never a tag: a colliding tag would take a sha-256 collision.
pub(crate) fn docker_tag(version: &str, spec_hash: &B256) -> String {
    let hash = alloy::hex::encode(spec_hash);
    let mut version = docker_tag_version(version).to_ascii_lowercase();
    version.truncate(MAX_DOCKER_TAG - 1 - hash.len());
    format!("{version}-{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_module_directory() {
        for ok in [
            "lilysay",
            "a",
            "github.com/org/repo",
            "A9._-/x",
            &"n".repeat(128),
        ] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".x",
            "/x",
            "-x",
            "_x",
            "a b",
            "a:b",
            "ü",
            &"n".repeat(129),
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        for ok in ["0.1.0", "v2", "1.0.0+build.5", "1_2-3", &"1".repeat(64)] {
            assert!(is_valid_version(ok), "{ok}");
        }
        for bad in ["", "+1", ".1", "1/2", "1:2", "1 2", &"1".repeat(65)] {
            assert!(!is_valid_version(bad), "{bad}");
        }
    }

    #[test]
    fn input_and_env_names() {
        for ok in ["Message", "a", "A_1", "x_"] {
            assert!(is_valid_input_name(ok), "{ok}");
        }
        for bad in ["", "1a", "_a", "a-b", "a b", "a.b", "ä", &"a".repeat(65)] {
            assert!(!is_valid_input_name(bad), "{bad}");
        }
        for ok in ["LANG", "_X", "a1"] {
            assert!(is_valid_env_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A=B", "A B", "A-B"] {
            assert!(!is_valid_env_name(bad), "{bad}");
        }
    }

    #[test]
    fn references() {
        let r = parse_reference("lilysay:0.1.0").unwrap();
        assert_eq!(r.name, "lilysay");
        assert_eq!(r.version, "0.1.0");
        assert_eq!(r.to_string(), "lilysay:0.1.0");
        assert_eq!(r.id(), keccak256(b"lilysay:0.1.0"));
        assert_eq!(
            "github.com/o/r:v1".parse::<ModuleRef>().unwrap().name,
            "github.com/o/r"
        );
        assert!(matches!(
            parse_reference("lilysay"),
            Err(ReferenceError::Malformed(_))
        ));
        assert!(matches!(
            parse_reference("a:b:c"),
            Err(ReferenceError::Malformed(_))
        ));
        assert!(matches!(
            parse_reference(":1"),
            Err(ReferenceError::InvalidName(_))
        ));
        assert!(matches!(
            parse_reference("-a:1"),
            Err(ReferenceError::InvalidName(_))
        ));
        assert!(matches!(
            parse_reference("a:"),
            Err(ReferenceError::InvalidVersion(_))
        ));
        assert!(matches!(
            parse_reference("a:+1"),
            Err(ReferenceError::InvalidVersion(_))
        ));
        let e = parse_reference("lilysay").unwrap_err().to_string();
        assert!(e.contains("name:version"), "{e}");
    }

    #[test]
    fn loader_and_gpu_runtime_variables_are_forbidden() {
        for bad in ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "ld_preload", "Ld_Preload", "DYLD_INSERT_LIBRARIES", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "nvidia_visible_devices", "GCONV_PATH", "GLIBC_TUNABLES"] {
            assert!(forbidden_env(bad).is_some(), "{bad}");
        }
        for ok in ["LANG", "PATH", "HOME", "LDFLAGS", "OLD_PRELOAD", "CUDA_VISIBLE_DEVICES", "GCONV", "XLD_PRELOAD"] {
            assert_eq!(forbidden_env(ok), None, "{ok}");
        }
    }

    #[test]
    fn tags_carry_the_whole_hash_and_fit_docker() {
        let h = B256::repeat_byte(0xab);
        assert_eq!(docker_tag("0.1.0+b", &h), format!("0.1.0_b-{}", "ab".repeat(32)));
        let long = docker_tag(&"v".repeat(MAX_VERSION_LENGTH), &h);
        assert_eq!(long.len(), MAX_DOCKER_TAG, "{long}");
        assert!(long.ends_with(&"ab".repeat(32)));
    }

    #[test]
    fn docker_names() {
        assert_eq!(docker_repository("lilysay"), "lilypad/lilysay");
        assert_eq!(
            docker_repository("github.com/Org/My_Repo"),
            "lilypad/github.com/org/my_repo"
        );
        assert_eq!(
            docker_repository("a..b//c-_d__e___f.-"),
            "lilypad/a-b/c-d__e-f"
        );
        assert_eq!(docker_tag_version("1.0.0+b.5"), "1.0.0_b.5");
    }
}
