//! The roles an account holds in the market, as the contract's `roles` bit set
//! (`ROLE_SOLVER = 1`, `ROLE_PROVIDER = 2`, `ROLE_MEDIATOR = 4`).

use serde::{Deserialize, Serialize};

/// A set of market roles. Serialises as the contract's `uint8` bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Roles(u8);

impl Roles {
    /// No role.
    pub const NONE: Roles = Roles(0);
    /// Records matches (`registerSolver`).
    pub const SOLVER: Roles = Roles(1);
    /// Runs jobs (`registerProvider`).
    pub const PROVIDER: Roles = Roles(2);
    /// Rules on challenges (`registerMediator`).
    pub const MEDIATOR: Roles = Roles(4);

    /// The roles of a raw bit set as the contract stores it (unknown bits are kept).
    pub const fn from_bits(bits: u8) -> Roles {
        Roles(bits)
    }

    /// The raw bit set, as the contract stores it.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every role of `other` is in `self`.
    pub const fn contains(self, other: Roles) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether `self` holds any role at all.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl From<u8> for Roles {
    fn from(bits: u8) -> Roles {
        Roles(bits)
    }
}

impl From<Roles> for u8 {
    fn from(roles: Roles) -> u8 {
        roles.0
    }
}

impl std::ops::BitOr for Roles {
    type Output = Roles;
    fn bitor(self, rhs: Roles) -> Roles {
        Roles(self.0 | rhs.0)
    }
}

impl std::fmt::Display for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = [(Roles::SOLVER, "solver"), (Roles::PROVIDER, "provider"), (Roles::MEDIATOR, "mediator")]
            .into_iter()
            .filter(|(r, _)| self.contains(*r))
            .map(|(_, n)| n)
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join("+"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_match_the_contract_bits_and_serialise_as_them() {
        let both = Roles::from_bits(2 | 4);
        assert!(both.contains(Roles::PROVIDER) && both.contains(Roles::MEDIATOR));
        assert!(!both.contains(Roles::SOLVER));
        assert_eq!(Roles::SOLVER | Roles::PROVIDER, Roles::from_bits(3));
        assert_eq!(serde_json::to_string(&both).unwrap(), "6");
        assert_eq!(serde_json::from_str::<Roles>("1").unwrap(), Roles::SOLVER);
        assert_eq!(both.to_string(), "provider+mediator");
        assert_eq!(Roles::NONE.to_string(), "none");
    }
}
