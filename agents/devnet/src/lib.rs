//! A local devnet: Anvil started as a child process, the token and the market deployed from
//! the committed artifacts (no forge needed), roles and balances set up for the well-known
//! Anvil accounts. Used by `lilypad devnet` and by the end-to-end tests.

#![forbid(unsafe_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use lilypad_bindings::{Config, LilypadDevToken, LilypadMarket};
use lilypad_chain::Deployment;
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

/// The well-known Anvil/Hardhat accounts (mnemonic "test test ... junk"), in the roles the
/// Lilypad reference's devnet gives them.
pub mod accounts {
    /// Account 0: deploys the contracts and owns them (faucet, default mediators).
    pub const ADMIN: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    /// Account 1: a second job creator.
    pub const JOB_CREATOR_2: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    /// Account 2: the solver.
    pub const SOLVER: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";
    /// Account 3: the mediator (index 0).
    pub const MEDIATOR: &str = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6";
    /// Account 4: the resource provider.
    pub const RESOURCE_PROVIDER: &str = "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a";
    /// Account 5: the job creator `lilypad run` uses on a devnet.
    pub const JOB_CREATOR: &str = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba";
    /// Account 6: a second resource provider.
    pub const RESOURCE_PROVIDER_2: &str = "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e";
    /// Account 7: the auditor.
    pub const AUDITOR: &str = "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356";
    /// Account 8: a third resource provider.
    pub const RESOURCE_PROVIDER_3: &str = "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97";
    /// Account 9: unused by the devnet, free for tests.
    pub const SPARE: &str = "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6";
    /// The devnet's keeper (not one of Anvil's funded accounts: `lilypad devnet` gives it ether).
    pub const KEEPER: &str = "0x6b65657065720000000000000000000000000000000000000000000000000001";
}

/// Why a devnet could not be started or deployed.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// The `anvil` binary could not be started.
    #[error("cannot start anvil ({0}): run tools/bootstrap and `source tools/env.sh`, or install Foundry")]
    AnvilMissing(std::io::Error),
    /// Anvil exited before it answered.
    #[error("anvil stopped at start (port {port}): {reason} (is the port taken? pick another with --port)")]
    AnvilExited {
        /// The port it was given.
        port: u16,
        /// Its last output, or how it exited.
        reason: String,
    },
    /// Anvil did not answer in time.
    #[error("anvil did not answer on {url} within {secs} s")]
    AnvilTimeout {
        /// Where it was asked.
        url: String,
        /// How long it was waited for.
        secs: u64,
    },
    /// No port could be bound on loopback.
    #[error("no free local port: {0}")]
    NoPort(std::io::Error),
    /// A contract could not be deployed or set up.
    #[error("deploying {what} failed: {reason}")]
    Deploy {
        /// The contract or step.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The deployment file could not be written.
    #[error("writing {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// A running Anvil; killed when dropped. [`Anvil::stop`] also joins the tasks that drain its
/// output.
pub struct Anvil {
    child: Child,
    port: u16,
    drains: JoinSet<()>,
}

impl Anvil {
    /// Starts Anvil on `port` (a free one when `None`), mining each transaction at once.
    pub async fn start(port: Option<u16>) -> Result<Self, DevnetError> {
        Self::start_with(port, None).await
    }

    /// Like [`Anvil::start`], plus, with `block_time`, an empty block every that many seconds
    /// so that time moves on (deadlines and challenge windows pass) when nobody transacts.
    pub async fn start_with(port: Option<u16>, block_time: Option<u64>) -> Result<Self, DevnetError> {
        use tokio::io::{AsyncBufReadExt, BufReader};
        // Port 0: Anvil binds a free port itself and says which ("Listening on host:port"), so
        // two devnets started at once can never race for the same port.
        let asked = port.unwrap_or(0);
        let mut command = Command::new("anvil");
        command.args(["--port", &asked.to_string(), "--host", "127.0.0.1", "--chain-id", "31337"]);
        if let Some(secs) = block_time {
            command.args(["--block-time", &secs.to_string(), "--mixed-mining"]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(DevnetError::AnvilMissing)?;
        let stdout = child.stdout.take().ok_or_else(|| DevnetError::AnvilTimeout { url: "anvil's stdout".into(), secs: 0 })?;
        let stderr = child.stderr.take();
        let mut lines = BufReader::new(stdout).lines();
        let started = Instant::now();
        let port = loop {
            let line = tokio::time::timeout(Duration::from_secs(20).saturating_sub(started.elapsed()), lines.next_line()).await;
            match line {
                Ok(Ok(Some(line))) => {
                    if let Some(addr) = line.trim().strip_prefix("Listening on ") {
                        if let Some(p) = addr.rsplit(':').next().and_then(|p| p.trim().parse::<u16>().ok()) {
                            break p;
                        }
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) => {
                    // it exited: say why (e.g. the port is taken)
                    let mut why = String::new();
                    if let Some(err) = stderr {
                        let mut err_lines = BufReader::new(err).lines();
                        while let Ok(Some(l)) = err_lines.next_line().await {
                            why.push_str(&l);
                            why.push(' ');
                        }
                    }
                    return Err(DevnetError::AnvilExited { port: asked, reason: why.trim().to_string() });
                }
                Err(_) => return Err(DevnetError::AnvilTimeout { url: format!("127.0.0.1:{asked}"), secs: 20 }),
            }
        };
        // Keep draining its output (it logs every request), or it would block on a full pipe.
        // The drains end when Anvil exits (its pipes close); `stop` joins them.
        let mut drains = JoinSet::new();
        drains.spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        if let Some(err) = stderr {
            drains.spawn(async move {
                let mut l = BufReader::new(err).lines();
                while let Ok(Some(_)) = l.next_line().await {}
            });
        }
        let anvil = Self { child, port, drains };
        let url = anvil.url();
        let provider = ProviderBuilder::new().connect_http(url.parse().map_err(|_| DevnetError::AnvilTimeout { url: url.clone(), secs: 0 })?);
        while provider.get_chain_id().await.is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                return Err(DevnetError::AnvilTimeout { url, secs: 20 });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(anvil)
    }

    /// Its JSON-RPC URL on loopback.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops Anvil now and joins the tasks that drained its output (a panic in one is
    /// reported).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        while let Some(joined) = self.drains.join_next().await {
            if let Err(e) = joined {
                tracing::error!(error = %e, "a task draining anvil's output failed");
            }
        }
    }
}

/// A port free on loopback now (bound and released: another process may take it first).
pub fn free_port() -> Result<u16, DevnetError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(DevnetError::NoPort)?;
    l.local_addr().map(|a| a.port()).map_err(DevnetError::NoPort)
}

/// The market's parameters on a devnet: quick timeouts so that every path can be watched.
pub fn devnet_config() -> Config {
    Config {
        solverFeeBps: 500,
        collateralBps: 20_000,
        mediatorFee: 1_000_000_000_000_000_000,
        challengeBond: 2_000_000_000_000_000_000,
        matchTimeout: 300,
        challengeWindow: 30,
        mediationTimeout: 600,
        callbackGas: 200_000,
    }
}

/// Deploys the devnet token and the market with `config`, signed by the admin account.
pub async fn deploy(rpc_url: &str, config: Config) -> Result<Deployment, DevnetError> {
    let err = |what: &'static str| move |e: alloy::contract::Error| DevnetError::Deploy { what, reason: e.to_string() };
    let admin: PrivateKeySigner = accounts::ADMIN.parse().map_err(|_| DevnetError::Deploy { what: "admin key", reason: "bad key".into() })?;
    let owner = admin.address();
    let url = rpc_url.parse().map_err(|_| DevnetError::Deploy { what: "RPC URL", reason: rpc_url.to_string() })?;
    let provider = ProviderBuilder::new().wallet(EthereumWallet::from(admin)).connect_http(url);
    let start_block = provider.get_block_number().await.map_err(|e| DevnetError::Deploy { what: "block number", reason: e.to_string() })?;
    let supply = U256::from(1_000_000_000u64) * U256::from(10u64).pow(U256::from(18u64));
    let token = LilypadDevToken::deploy(&provider, owner, supply).await.map_err(err("LilypadDevToken"))?;
    let market = LilypadMarket::deploy(&provider, *token.address(), config.clone(), owner).await.map_err(err("LilypadMarket"))?;
    Ok(Deployment {
        chain_id: 31337,
        start_block,
        owner,
        token: *token.address(),
        market: *market.address(),
        solver_fee_bps: u64::from(config.solverFeeBps),
        collateral_bps: u64::from(config.collateralBps),
        mediator_fee: config.mediatorFee,
        challenge_bond: config.challengeBond,
        match_timeout: config.matchTimeout,
        challenge_window: config.challengeWindow,
        mediation_timeout: config.mediationTimeout,
        callback_gas: config.callbackGas,
    })
}

/// Writes `deployment` as `dir/<chainId>.json`, the same shape `script/Deploy.s.sol` writes.
pub fn write_deployment(dir: &Path, d: &Deployment) -> Result<PathBuf, DevnetError> {
    let path = Deployment::path_for(dir, d.chain_id);
    let json = serde_json::json!({
        "chainId": d.chain_id, "startBlock": d.start_block, "owner": d.owner, "token": d.token,
        "market": d.market, "solverFeeBps": d.solver_fee_bps, "collateralBps": d.collateral_bps,
        "mediatorFee": d.mediator_fee.to_string(), "challengeBond": d.challenge_bond.to_string(),
        "matchTimeout": d.match_timeout, "challengeWindow": d.challenge_window,
        "mediationTimeout": d.mediation_timeout, "callbackGas": d.callback_gas,
    });
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&json)?)?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| DevnetError::Write { path: path.clone(), reason: e.to_string() })?;
    Ok(path)
}

/// The address of a private key.
pub fn address_of(key: &str) -> Option<Address> {
    key.parse::<PrivateKeySigner>().ok().map(|s| s.address())
}
