//! The chain client: one RPC connection, an optional signer, and transactions sent one at a
//! time with gas estimation, retries for what is retryable and decoded reverts for what is not.

use std::future::IntoFuture;
use std::time::Duration;

use alloy::contract::{CallBuilder, CallDecoder};
use alloy::network::EthereumWallet;
use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::{RpcError, TransportErrorKind};
use lilypad_bindings::LilypadMarket::{LilypadMarketErrors, LilypadMarketInstance};
use lilypad_bindings::LilypadToken::LilypadTokenInstance;
use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::{ChainError, ChainKey, Deployment, StateDir};

/// Longest wait for a sent transaction's receipt before the send counts as failed (retryable).
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// How hard to try before giving up on a retryable failure.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Tries in all.
    pub attempts: u32,
    /// The pause after the first failure.
    pub first_delay: Duration,
    /// The longest pause (pauses double up to it).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 8, first_delay: Duration::from_millis(200), max_delay: Duration::from_secs(5) }
    }
}

/// A connection to the chain the market is deployed on.
#[derive(Clone)]
pub struct ChainClient {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    provider: DynProvider,
    url: String,
    signer: Option<Address>,
    deployment: Deployment,
    /// Which deployment this is, read at connect (see [`StateDir`]).
    key: ChainKey,
    retry: RetryPolicy,
    /// Transactions of one signer reach the node one at a time: nonces stay in order.
    send_lock: Mutex<()>,
}

impl ChainClient {
    /// Connects to `rpc_url`, checks that it serves the deployment's chain and that the market
    /// is there, and signs with `private_key` when one is given.
    pub async fn connect(rpc_url: &str, private_key: Option<&str>, deployment: Deployment) -> Result<Self, ChainError> {
        let url: alloy::transports::http::reqwest::Url =
            rpc_url.parse().map_err(|e| ChainError::InvalidUrl { url: rpc_url.to_string(), reason: format!("{e}") })?;
        let (provider, signer) = match private_key {
            Some(key) => {
                let signer: PrivateKeySigner =
                    key.trim().parse().map_err(|_| ChainError::InvalidKey("not a secp256k1 private key".into()))?;
                let address = signer.address();
                // Nonces are read from the node (pending count) for each transaction, never
                // reserved locally: alloy's default cached manager reserves one while gas is
                // being estimated concurrently, so a call that reverts at estimation leaves a
                // gap and every later transaction of the signer waits forever. One signer's
                // sends are serialized (`send_lock`), so reading the count is enough.
                let provider = ProviderBuilder::new()
                    .disable_recommended_fillers()
                    .with_gas_estimation()
                    .with_simple_nonce_management()
                    .fetch_chain_id()
                    .wallet(EthereumWallet::from(signer))
                    .connect_http(url)
                    .erased();
                (provider, Some(address))
            }
            None => (ProviderBuilder::new().connect_http(url).erased(), None),
        };
        let key = ChainKey { chain_id: deployment.chain_id, market: deployment.market, deploy_block: deployment.start_block, deploy_block_hash: Default::default() };
        let mut client = Self {
            inner: std::sync::Arc::new(Inner {
                provider,
                url: rpc_url.to_string(),
                signer,
                deployment,
                key,
                retry: RetryPolicy::default(),
                send_lock: Mutex::new(()),
            }),
        };
        let actual = client.retrying("reading the chain id", || client.provider().get_chain_id()).await?;
        let expected = client.inner.deployment.chain_id;
        if actual != expected {
            return Err(ChainError::WrongChain { expected, actual });
        }
        let market = client.inner.deployment.market;
        let code = client.retrying("reading the market's code", || client.provider().get_code_at(market).into_future()).await?;
        if code.is_empty() {
            return Err(ChainError::NoContract { address: market });
        }
        let block = key.deploy_block;
        let header = client
            .retrying("reading the deployment block", || client.provider().get_block_by_number(block.into()).into_future())
            .await?
            .ok_or(ChainError::NoDeploymentBlock { block })?;
        // `client` is not shared yet, so this always finds the only reference.
        if let Some(inner) = std::sync::Arc::get_mut(&mut client.inner) {
            inner.key.deploy_block_hash = header.header.hash;
        }
        Ok(client)
    }

    /// The RPC provider, for calls the typed helpers do not cover.
    pub fn provider(&self) -> &DynProvider {
        &self.inner.provider
    }

    /// Where the contracts are and how the market is configured.
    pub fn deployment(&self) -> &Deployment {
        &self.inner.deployment
    }

    /// Which deployment of the market this is: chain id, market address and the hash of the
    /// deployment file's start block, as read when connecting.
    pub fn chain_key(&self) -> &ChainKey {
        &self.inner.key
    }

    /// The state folder of this chain under `data_dir` (see [`StateDir`]).
    pub fn state_dir(&self, data_dir: &std::path::Path) -> Result<StateDir, ChainError> {
        StateDir::open(data_dir, &self.inner.key)
    }

    /// The RPC URL it connected to.
    pub fn rpc_url(&self) -> &str {
        &self.inner.url
    }

    /// The signer's address.
    pub fn address(&self) -> Result<Address, ChainError> {
        self.inner.signer.ok_or(ChainError::NoSigner)
    }

    /// The market contract, for calls and transactions (send them with [`ChainClient::send`]).
    pub fn market(&self) -> LilypadMarketInstance<DynProvider> {
        LilypadMarketInstance::new(self.inner.deployment.market, self.inner.provider.clone())
    }

    /// The token contract.
    pub fn token(&self) -> LilypadTokenInstance<DynProvider> {
        LilypadTokenInstance::new(self.inner.deployment.token, self.inner.provider.clone())
    }

    /// Runs a read-only RPC request, retrying transient failures.
    pub async fn retrying<T, F, Fut>(&self, action: &str, mut f: F) -> Result<T, ChainError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RpcError<TransportErrorKind>>>,
    {
        let mut delay = self.inner.retry.first_delay;
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let err = self.classify_rpc(action, &e);
                    if !err.is_retryable() || attempt >= self.inner.retry.attempts {
                        return Err(err);
                    }
                    warn!(action, attempt, error = %err, "retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.inner.retry.max_delay);
                    attempt += 1;
                }
            }
        }
    }

    /// Runs a contract read (a `call()`), retrying transient failures.
    pub async fn read<T, F, Fut>(&self, action: &str, mut f: F) -> Result<T, ChainError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, alloy::contract::Error>>,
    {
        self.retrying(action, || {
            let call = f();
            async move {
                call.await.map_err(|e| match e {
                    alloy::contract::Error::TransportError(t) => t,
                    other => RpcError::LocalUsageError(Box::new(other)),
                })
            }
        })
        .await
    }

    /// The latest block's timestamp: the market's clock.
    pub async fn latest_timestamp(&self) -> Result<u64, ChainError> {
        let block = self
            .retrying("reading the latest block", || self.provider().get_block_by_number(alloy::eips::BlockNumberOrTag::Latest).into_future())
            .await?;
        Ok(block.map(|b| b.header.timestamp).unwrap_or(0))
    }

    /// Sends a contract call as a transaction and waits for its receipt. Gas is estimated (a
    /// revert shows up here, decoded, before anything is spent); transient failures are
    /// retried; a transaction that reverts on chain is an error.
    pub async fn send<D>(&self, action: &str, call: CallBuilder<&DynProvider, D>) -> Result<TransactionReceipt, ChainError>
    where
        D: CallDecoder + Send + Sync,
    {
        self.address()?;
        let mut delay = self.inner.retry.first_delay;
        let mut attempt = 1;
        loop {
            let result = async {
                // One signer's transactions get their nonces (and reach the node) one at a time,
                // in order; the receipt is awaited without the lock, so concurrent callers (the
                // solver's matches of one pass, a provider's jobs) share blocks instead of taking
                // one block each.
                let pending = {
                    let _guard = self.inner.send_lock.lock().await;
                    call.send().await?
                };
                let hash = *pending.tx_hash();
                // Poll for the receipt rather than follow new blocks (alloy's heartbeat): a
                // node that jumps in time (evm_increaseTime) or mines in bursts can leave the
                // heartbeat waiting for a block it already passed.
                let started = std::time::Instant::now();
                let mut pause = Duration::from_millis(25);
                loop {
                    if let Some(receipt) = self.provider().get_transaction_receipt(hash).await.map_err(alloy::contract::Error::TransportError)? {
                        return Ok::<_, alloy::contract::Error>(receipt);
                    }
                    if started.elapsed() > RECEIPT_TIMEOUT {
                        return Err(alloy::contract::Error::PendingTransactionError(alloy::providers::PendingTransactionError::TxWatcher(
                            alloy::providers::WatchTxError::Timeout,
                        )));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
            }
            .await;
            let err = match result {
                Ok(receipt) if receipt.status() => {
                    debug!(action, tx = %receipt.transaction_hash, gas = receipt.gas_used, "sent");
                    return Ok(receipt);
                }
                Ok(receipt) => {
                    return Err(ChainError::Reverted {
                        action: action.to_string(),
                        reason: format!("reverted on chain in transaction {}", receipt.transaction_hash),
                        error_name: None,
                    })
                }
                Err(e) => self.classify_contract(action, &e),
            };
            if !err.is_retryable() || attempt >= self.inner.retry.attempts {
                return Err(err);
            }
            warn!(action, attempt, error = %err, "transaction failed, retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.inner.retry.max_delay);
            attempt += 1;
        }
    }

    fn classify_contract(&self, action: &str, e: &alloy::contract::Error) -> ChainError {
        if let Some(decoded) = e.as_decoded_interface_error::<LilypadMarketErrors>() {
            let reason = format!("{decoded:?}");
            let name = reason.split(|c: char| !c.is_alphanumeric()).next().map(str::to_string);
            return ChainError::Reverted { action: action.to_string(), reason, error_name: name };
        }
        if let Some(data) = e.as_revert_data() {
            return ChainError::Reverted {
                action: action.to_string(),
                reason: revert_reason(&data),
                error_name: None,
            };
        }
        match e {
            alloy::contract::Error::TransportError(t) => self.classify_rpc(action, t),
            alloy::contract::Error::PendingTransactionError(p) => ChainError::Node {
                action: action.to_string(),
                reason: p.to_string(),
                retryable: true,
            },
            other => ChainError::Node { action: action.to_string(), reason: other.to_string(), retryable: false },
        }
    }

    fn classify_rpc(&self, action: &str, e: &RpcError<TransportErrorKind>) -> ChainError {
        match e {
            RpcError::ErrorResp(payload) => {
                let msg = payload.message.to_string();
                let lower = msg.to_lowercase();
                let retryable = ["nonce too low", "replacement transaction underpriced", "already known", "timeout", "rate limit", "too many requests", "header not found"]
                    .iter()
                    .any(|p| lower.contains(p));
                let reason = if lower.contains("insufficient funds") {
                    format!("{msg} (the account needs ETH for gas)")
                } else {
                    msg
                };
                ChainError::Node { action: action.to_string(), reason, retryable }
            }
            RpcError::Transport(kind) if !kind.is_retry_err() && !matches!(kind, TransportErrorKind::HttpError(_)) => {
                ChainError::Unreachable { url: self.inner.url.clone(), action: action.to_string(), reason: kind.to_string() }
            }
            RpcError::Transport(kind) => {
                ChainError::Unreachable { url: self.inner.url.clone(), action: action.to_string(), reason: kind.to_string() }
            }
            other => ChainError::Node { action: action.to_string(), reason: other.to_string(), retryable: false },
        }
    }
}

/// A readable reason for revert data that is not one of the market's errors.
fn revert_reason(data: &[u8]) -> String {
    use alloy::sol_types::{Revert, SolError};
    if let Ok(r) = Revert::abi_decode(data) {
        return r.reason;
    }
    // Errors of libraries the market uses, which are not in its ABI.
    match data.get(..4) {
        Some([0x79, 0x39, 0xf4, 0x24]) => {
            return "TransferFromFailed: the payer's token allowance to the market, or its token balance, is too low".into()
        }
        Some([0x90, 0xb8, 0xec, 0x18]) => return "TransferFailed: the token refused a transfer out of the market".into(),
        Some([0x82, 0xb4, 0x29, 0x00]) => return "Unauthorized: only the market's owner may do this".into(),
        _ => {}
    }
    format!("revert data 0x{}", hex::encode(data))
}
