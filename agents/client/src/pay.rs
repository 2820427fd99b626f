//! Paying for a job and creating it on chain.

use alloy::primitives::{Address, U256};
use alloy::rpc::types::TransactionReceipt;
use alloy::sol_types::SolEvent;
use lilypad_bindings::LilypadMarket;
use lilypad_chain::ChainClient;

use crate::ClientError;

/// How a job's payment will be taken when it is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payment {
    /// Off the payer's free balance in the market (deposited before: `lilypad deposit`); no
    /// token approval or transfer.
    Prepaid,
    /// From the payer's tokens by `transferFrom`; `approved` says whether an approval of exactly
    /// the payment was sent now (none when one as large was in place).
    Tokens { approved: bool },
}

/// Makes sure `payer` can pay `payment`. The market takes it off the payer's free market
/// balance when that covers it; otherwise it pulls the tokens, so the payer must hold them and
/// the market must be allowed to take them (an approval of exactly `payment` is sent unless one
/// as large is in place).
pub async fn pay(client: &ChainClient, payer: Address, payment: u128) -> Result<Payment, ClientError> {
    let free = client.market_balance(payer).await?;
    if free >= U256::from(payment) {
        return Ok(Payment::Prepaid);
    }
    let token = client.token();
    let held = client.read("reading the token balance", || async { token.balanceOf(payer).call().await }).await?;
    if held < U256::from(payment) {
        return Err(ClientError::NoFunds { payer, held, free, payment });
    }
    let market = client.deployment().market;
    let allowance = client.read("reading the allowance", || async { token.allowance(payer, market).call().await }).await?;
    if allowance < U256::from(payment) {
        client.send("approve", token.approve(market, U256::from(payment))).await?;
        return Ok(Payment::Tokens { approved: true });
    }
    Ok(Payment::Tokens { approved: false })
}

/// A job created on chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// Its id.
    pub id: U256,
    /// The block it was created in (follow it from there).
    pub block: u64,
}

/// Creates the job: `runJob` at the module's default payment, or `createJob` with
/// `max_payment` as the price cap. The payment must be covered ([`pay`]).
pub async fn submit(client: &ChainClient, module: &str, inputs: &[String], payee: Address, max_payment: Option<u128>) -> Result<Submitted, ClientError> {
    let market = client.market();
    let receipt = match max_payment {
        Some(payment) => {
            let request = lilypad_bindings::JobRequest { module: module.to_string(), inputs: inputs.to_vec(), payee, maxPayment: payment, ..Default::default() };
            client.send("createJob", market.createJob(request)).await?
        }
        None => client.send("runJob", market.runJob(module.to_string(), inputs.to_vec(), payee)).await?,
    };
    let id = created_job_id(&receipt).ok_or(ClientError::NoJobCreated)?;
    Ok(Submitted { id, block: receipt.block_number.unwrap_or(client.deployment().start_block) })
}

/// The id of the job a `runJob` / `createJob` receipt created.
pub fn created_job_id(receipt: &TransactionReceipt) -> Option<U256> {
    receipt.inner.logs().iter().find_map(|l| LilypadMarket::JobCreated::decode_log(&l.inner).ok().map(|e| e.data.id))
}
