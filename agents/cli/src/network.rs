//! Which chain to talk to and as whom: flags, then environment, then the local devnet's file.

use std::path::{Path, PathBuf};

use eyre::{eyre, WrapErr};
use lilypad_chain::{ChainClient, Deployment};
use serde::{Deserialize, Serialize};

/// What `lilypad devnet` writes to `<data-dir>/devnet.json` so that the other commands find
/// it with no flags.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevnetInfo {
    pub rpc_url: String,
    pub deployment: PathBuf,
    /// The resource provider's outputs gateway.
    pub gateway: String,
    /// Module folders the devnet published.
    pub modules: Vec<PathBuf>,
    /// Well-known devnet keys by role (public test keys, never use them elsewhere).
    pub job_creator_key: String,
    pub solver_key: String,
    pub provider_key: String,
}

impl DevnetInfo {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("devnet.json")
    }

    pub fn load(data_dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(Self::path(data_dir)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

#[derive(clap::Args, Clone, Debug, Default)]
pub struct NetworkArgs {
    /// JSON-RPC URL of the chain (default: the local devnet's).
    #[arg(long, env = "WEB3_RPC_URL")]
    pub rpc_url: Option<String>,
    /// The deployment file (default: the local devnet's, else deployments/<chainId>.json).
    #[arg(long, env = "LILYPAD_DEPLOYMENT")]
    pub deployment: Option<PathBuf>,
    /// Private key to sign with (default on the devnet: its well-known key for the role).
    #[arg(long, env = "WEB3_PRIVATE_KEY", hide_env_values = true)]
    pub private_key: Option<String>,
}

/// A resolved network.
pub struct Network {
    pub rpc_url: String,
    pub deployment: Deployment,
    pub private_key: Option<String>,
    pub devnet: Option<DevnetInfo>,
}

impl std::fmt::Debug for Network {
    // never print the key
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("rpc_url", &self.rpc_url).field("chain", &self.deployment.chain_id).finish()
    }
}

impl NetworkArgs {
    /// Flags over environment over the devnet's file. `role_key` picks the devnet key to use
    /// when none is given.
    pub fn resolve_with(&self, data_dir: &Path, role_key: impl Fn(&DevnetInfo) -> String) -> eyre::Result<Network> {
        let devnet = DevnetInfo::load(data_dir);
        let rpc_url = match (&self.rpc_url, &devnet) {
            (Some(u), _) => u.clone(),
            (None, Some(d)) => d.rpc_url.clone(),
            (None, None) => {
                return Err(eyre!(
                    "no network: start a local one with `lilypad devnet` (in another terminal), or pass --rpc-url and --deployment"
                ))
            }
        };
        let deployment_path = match (&self.deployment, &devnet) {
            (Some(p), _) => p.clone(),
            (None, Some(d)) if self.rpc_url.is_none() => d.deployment.clone(),
            _ => return Err(eyre!("which contracts? pass --deployment deployments/<chainId>.json")),
        };
        let deployment = Deployment::load(&deployment_path)?;
        let private_key = self.private_key.clone().or_else(|| devnet.as_ref().filter(|_| self.rpc_url.is_none()).map(&role_key));
        Ok(Network { rpc_url, deployment, private_key, devnet })
    }

    pub fn resolve(&self, data_dir: &Path) -> eyre::Result<Network> {
        self.resolve_with(data_dir, |d| d.solver_key.clone())
    }
}

impl Network {
    pub async fn connect(&self, needs_signer: bool) -> eyre::Result<ChainClient> {
        if needs_signer && self.private_key.is_none() {
            return Err(eyre!("a private key is needed: set WEB3_PRIVATE_KEY or pass --private-key"));
        }
        ChainClient::connect(&self.rpc_url, self.private_key.as_deref(), self.deployment.clone())
            .await
            .wrap_err_with(|| format!("connecting to {}", self.rpc_url))
    }
}
