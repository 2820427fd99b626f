//! Which engines a provider runs and which engine a module needs, as the market's events tell
//! it without an on-chain engines field.
//!
//! - A module's engine is in its published `ModuleSpec.flags`: bit [`MODULE_WASM`] set means
//!   WebAssembly, clear means Docker.
//! - A provider states its engines with `announceModules`, the same event-only hint it uses
//!   for modules it has at hand, naming a reserved id per engine ([`EngineSet::announcement_id`]:
//!   `keccak256("lilypad:engine:docker")`, `keccak256("lilypad:engine:wasm")`), `ready = true`
//!   for the engines it has and `false` for those it does not. A provider that never announced
//!   an engine is taken to run Docker only (what every provider ran before WebAssembly).
//!
//! The solver matches a job only to a provider whose engines include its module's; a provider
//! matched to a job for an engine it lacks gives it back at once (`releaseJob`, no collateral
//! lost).

use std::collections::BTreeSet;
use std::fmt;

use alloy::primitives::{keccak256, B256};
use serde::{Deserialize, Serialize};

/// The `ModuleSpec.flags` bit of a module that runs on the WebAssembly engine (the same bit as
/// `lilypad_module::MODULE_WASM`; `ModuleDirectory.sol` stores flags as given).
pub const MODULE_WASM: u8 = 4;

/// A set of engines (bit 0: Docker, bit 1: WebAssembly).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EngineSet(u8);

impl EngineSet {
    /// No engine.
    pub const NONE: EngineSet = EngineSet(0);
    /// Docker containers.
    pub const DOCKER: EngineSet = EngineSet(1);
    /// WebAssembly (WASI preview 1) modules.
    pub const WASM: EngineSet = EngineSet(2);
    /// Every engine there is, one at a time (for iterating).
    pub const EACH: [EngineSet; 2] = [EngineSet::DOCKER, EngineSet::WASM];

    /// The engine a module published with `flags` needs.
    pub fn of_module(flags: u8) -> EngineSet {
        if flags & MODULE_WASM != 0 {
            EngineSet::WASM
        } else {
            EngineSet::DOCKER
        }
    }

    /// Whether every engine of `other` is in `self`.
    pub fn contains(self, other: EngineSet) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets' engines.
    pub fn union(self, other: EngineSet) -> EngineSet {
        EngineSet(self.0 | other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The reserved id a provider announces (`announceModules([id], ready)`) to say it has
    /// (or has not) this one engine; `None` for a set of other than one engine.
    pub fn announcement_id(self) -> Option<B256> {
        // hashed once per process: the solver asks for every provider it weighs for every job
        static IDS: std::sync::LazyLock<[B256; 2]> =
            std::sync::LazyLock::new(|| [keccak256(b"lilypad:engine:docker"), keccak256(b"lilypad:engine:wasm")]);
        match self {
            EngineSet::DOCKER => Some(IDS[0]),
            EngineSet::WASM => Some(IDS[1]),
            _ => None,
        }
    }

    /// The engines a provider's announced ids state; Docker alone when it announced none.
    pub fn from_announced(ready: &BTreeSet<B256>) -> EngineSet {
        let mut set = EngineSet::NONE;
        let mut any = false;
        for e in EngineSet::EACH {
            if let Some(id) = e.announcement_id() {
                any |= ready.contains(&id);
                if ready.contains(&id) {
                    set = set.union(e);
                }
            }
        }
        if any {
            set
        } else {
            EngineSet::DOCKER
        }
    }

    /// The ids to announce ready (`true`) and not ready (`false`) for exactly this set.
    pub fn announcements(self) -> (Vec<B256>, Vec<B256>) {
        let (mut have, mut lack) = (Vec::new(), Vec::new());
        for e in EngineSet::EACH {
            if let Some(id) = e.announcement_id() {
                if self.contains(e) {
                    have.push(id);
                } else {
                    lack.push(id);
                }
            }
        }
        (have, lack)
    }

    /// Whether `id` is one of the reserved engine ids (not a module).
    pub fn is_announcement_id(id: &B256) -> bool {
        EngineSet::EACH.iter().any(|e| e.announcement_id().as_ref() == Some(id))
    }
}

impl fmt::Display for EngineSet {
    /// `docker`, `wasm`, `docker+wasm` or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [(EngineSet::DOCKER, "docker"), (EngineSet::WASM, "wasm")]
            .into_iter()
            .filter(|(e, _)| self.contains(*e))
            .map(|(_, n)| n)
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join("+"))
        }
    }
}

impl fmt::Debug for EngineSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EngineSet({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_that_announced_no_engine_runs_docker_only() {
        assert_eq!(EngineSet::from_announced(&BTreeSet::new()), EngineSet::DOCKER);
        let modules: BTreeSet<B256> = [B256::repeat_byte(7)].into_iter().collect();
        assert_eq!(EngineSet::from_announced(&modules), EngineSet::DOCKER);
    }

    #[test]
    fn announced_engines_are_exactly_the_provider_s() {
        let wasm_only: BTreeSet<B256> = EngineSet::WASM.announcements().0.into_iter().collect();
        assert_eq!(EngineSet::from_announced(&wasm_only), EngineSet::WASM);
        let both: BTreeSet<B256> = EngineSet::DOCKER.union(EngineSet::WASM).announcements().0.into_iter().collect();
        assert_eq!(EngineSet::from_announced(&both), EngineSet::DOCKER.union(EngineSet::WASM));
        let (have, lack) = EngineSet::WASM.announcements();
        assert_eq!((have.len(), lack.len()), (1, 1));
        assert_ne!(have, lack);
        assert!(EngineSet::is_announcement_id(&have[0]) && !EngineSet::is_announcement_id(&B256::ZERO));
    }

    #[test]
    fn a_module_s_engine_is_its_wasm_flag() {
        assert_eq!(EngineSet::of_module(0), EngineSet::DOCKER);
        assert_eq!(EngineSet::of_module(1 | 2), EngineSet::DOCKER);
        assert_eq!(EngineSet::of_module(MODULE_WASM | 1), EngineSet::WASM);
        assert_eq!(EngineSet::DOCKER.union(EngineSet::WASM).to_string(), "docker+wasm");
        assert!(!EngineSet::DOCKER.contains(EngineSet::WASM));
    }
}
