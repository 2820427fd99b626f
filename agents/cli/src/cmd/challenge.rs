//! `lilypad challenge <id>`: challenge a job's result within its challenge window.

use std::path::Path;

use alloy::primitives::U256;

use crate::network::NetworkArgs;

#[derive(clap::Args, Debug)]
pub struct ChallengeArgs {
    /// The job id.
    pub id: u64,
    #[command(flatten)]
    pub network: NetworkArgs,
}

impl ChallengeArgs {
    pub async fn run(self, data_dir: &Path) -> eyre::Result<()> {
        let net = self.network.resolve_with(data_dir, |d| d.job_creator_key.clone())?;
        let client = net.connect(true).await?;
        let id = U256::from(self.id);
        // rebuild the job from the events
        let mut follower = lilypad_chain::Follower::new(client.clone(), client.deployment().start_block);
        follower.catch_up().await?;
        let record = follower.book().get(id).ok_or_else(|| eyre::eyre!("job {id} is not live (never created, or already final)"))?;
        if record.state() != lilypad_bindings::JobState::Submitted {
            return Err(eyre::eyre!("job {id} is {:?}: only a submitted result can be challenged", record.state()));
        }
        let deposit = U256::from(client.deployment().challenge_deposit());
        let me = client.address()?;
        let market = client.market();
        let free = client.market_balance(me).await?;
        if free < deposit {
            let token = client.token();
            client.send("approve", token.approve(client.deployment().market, deposit)).await?;
        }
        client.send(&format!("challenge(job {id})"), market.challenge(id, record.job.clone())).await?;
        println!("challenged job {id}: mediator {} re-runs it and rules", record.job.mediator);
        Ok(())
    }
}
