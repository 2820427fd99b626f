//! `lilypad deposit <amount>` and `lilypad withdraw <amount>`: the job creator's prepaid balance
//! in the market. Jobs whose payment the balance covers take it from there (no token approval
//! or transfer per job: see README "Gas"); refunds are credited back to it.

use std::path::Path;

use alloy::primitives::{Address, U256};

use super::job::lp;
use crate::network::NetworkArgs;

#[derive(clap::Args, Debug)]
pub struct DepositArgs {
    /// How much to add to the market balance, in token units (1 LP = 10^18).
    pub amount: u128,
    #[command(flatten)]
    pub network: NetworkArgs,
}

#[derive(clap::Args, Debug)]
pub struct WithdrawArgs {
    /// How much of the free market balance to take out, in token units (1 LP = 10^18).
    pub amount: u128,
    /// Where to send it (default: the account itself).
    #[arg(long)]
    pub to: Option<Address>,
    #[command(flatten)]
    pub network: NetworkArgs,
}

impl DepositArgs {
    pub async fn run(self, data_dir: &Path) -> eyre::Result<()> {
        if self.amount == 0 {
            return Err(eyre::eyre!("nothing to deposit: give an amount above 0 (token units, 1 LP = 10^18)"));
        }
        let net = self.network.resolve_with(data_dir, |d| d.job_creator_key.clone())?;
        let client = net.connect(true).await?;
        let me = client.address()?;
        let amount = U256::from(self.amount);
        let held = client.token_balance(me).await?;
        if held < amount {
            return Err(eyre::eyre!("{me} holds {} of tokens: it cannot deposit {}", lp(held.saturating_to::<u128>()), lp(self.amount)));
        }
        let token = client.token();
        let market = client.deployment().market;
        let allowance = client.read("reading the allowance", || async { token.allowance(me, market).call().await }).await?;
        if allowance < amount {
            client.send("approve", token.approve(market, amount)).await?;
        }
        client.send("deposit", client.market().deposit(me, amount)).await?;
        let free = client.market_balance(me).await?;
        println!("deposited {}: {me}'s market balance is {}; jobs it covers are paid from it", lp(self.amount), lp(free.saturating_to::<u128>()));
        Ok(())
    }
}

impl WithdrawArgs {
    pub async fn run(self, data_dir: &Path) -> eyre::Result<()> {
        if self.amount == 0 {
            return Err(eyre::eyre!("nothing to withdraw: give an amount above 0 (token units, 1 LP = 10^18)"));
        }
        let net = self.network.resolve_with(data_dir, |d| d.job_creator_key.clone())?;
        let client = net.connect(true).await?;
        let me = client.address()?;
        let to = self.to.unwrap_or(me);
        let free = client.market_balance(me).await?;
        if free < U256::from(self.amount) {
            return Err(eyre::eyre!("{me}'s free market balance is {}: it cannot withdraw {}", lp(free.saturating_to::<u128>()), lp(self.amount)));
        }
        client.send("withdraw", client.market().withdraw(U256::from(self.amount), to)).await?;
        let left = client.market_balance(me).await?;
        println!("withdrew {} to {to}: {me}'s market balance is {}", lp(self.amount), lp(left.saturating_to::<u128>()));
        Ok(())
    }
}
