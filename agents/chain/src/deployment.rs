//! `deployments/<chainId>.json`, as `script/Deploy.s.sol` writes it.

use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use serde::{Deserialize, Deserializer};

use crate::ChainError;

/// Where the contracts of one chain are and how the market was configured.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// The chain's id (`eth_chainId`).
    pub chain_id: u64,
    /// The block to start reading events from (at or before the deployment).
    pub start_block: u64,
    /// The owner (admin) of the contracts.
    pub owner: Address,
    /// The LP token.
    pub token: Address,
    /// The market (and module directory).
    pub market: Address,
    /// The solver's fee, in basis points of a job's price.
    pub solver_fee_bps: u64,
    /// A provider's collateral per job, in basis points of its price.
    pub collateral_bps: u64,
    #[serde(deserialize_with = "amount")]
    /// The mediator's fee per challenge, in token base units.
    pub mediator_fee: u128,
    #[serde(deserialize_with = "amount")]
    /// The bond a challenger adds to the mediator's fee, in token base units.
    pub challenge_bond: u128,
    /// Seconds a job waits for a match before it can be expired.
    pub match_timeout: u32,
    /// Seconds a result can be challenged before it settles.
    pub challenge_window: u32,
    /// Seconds a mediator has to rule before the challenge times out.
    pub mediation_timeout: u32,
    /// Gas given to a client contract's result callback.
    pub callback_gas: u32,
}

impl Deployment {
    /// Reads a deployment file.
    pub fn load(path: &Path) -> Result<Self, ChainError> {
        let text = std::fs::read_to_string(path).map_err(|source| ChainError::Deployment {
            path: path.to_path_buf(),
            reason: format!("cannot read it: {source}"),
        })?;
        serde_json::from_str(&text).map_err(|e| ChainError::Deployment {
            path: path.to_path_buf(),
            reason: format!("not a deployment file: {e}"),
        })
    }

    /// `<dir>/<chain_id>.json`.
    pub fn path_for(dir: &Path, chain_id: u64) -> PathBuf {
        dir.join(format!("{chain_id}.json"))
    }

    /// The deposit a challenge costs.
    pub fn challenge_deposit(&self) -> u128 {
        self.mediator_fee + self.challenge_bond
    }
}

/// Amounts are written as decimal strings (they overflow JSON numbers); accept numbers too.
fn amount<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Amount {
        Text(String),
        Number(u64),
    }
    match Amount::deserialize(d)? {
        Amount::Number(n) => Ok(u128::from(n)),
        Amount::Text(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_deploy_script_writes() {
        let json = r#"{
          "callbackGas": 100000, "chainId": 31337, "challengeBond": "2000000000000000000",
          "challengeWindow": 60, "collateralBps": 20000,
          "market": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512", "matchTimeout": 3600,
          "mediationTimeout": 3600, "mediatorFee": "1000000000000000000",
          "owner": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "solverFeeBps": 500,
          "startBlock": 0, "token": "0x5FbDB2315678afecb367f032d93F642f64180aa3" }"#;
        let d: Deployment = serde_json::from_str(json).unwrap();
        assert_eq!(d.chain_id, 31337);
        assert_eq!(d.mediator_fee, 1_000_000_000_000_000_000);
        assert_eq!(d.challenge_deposit(), 3_000_000_000_000_000_000);
        assert_eq!(d.challenge_window, 60);
    }

    #[test]
    fn a_missing_file_says_which() {
        let err = Deployment::load(Path::new("/nonexistent/31337.json")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/31337.json"), "{err}");
    }
}
