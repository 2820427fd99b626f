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
        let history = super::job::JobHistory::load(&client, id).await?;
        if let Some(outcome) = &history.outcome {
            return Err(eyre::eyre!("job {id} is not live: it {}; nothing to challenge (`lilypad job {id}` shows its story)", ended(outcome)));
        }
        let record = &history.record;
        if record.state() != lilypad_bindings::JobState::Submitted {
            return Err(eyre::eyre!(
                "job {id} is {}: only a submitted result can be challenged (`lilypad job {id}` shows it)",
                history.status()
            ));
        }
        let d = client.deployment();
        println!(
            "challenging job {id} costs {} (mediator fee {} + bond {}); the bond comes back and the provider's collateral is yours if the mediator finds the result wrong",
            super::job::lp(d.challenge_deposit()),
            super::job::lp(d.mediator_fee),
            super::job::lp(d.challenge_bond)
        );
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

/// How a job that is no longer live ended, for "job N is not live: it ...".
fn ended(o: &lilypad_chain::Outcome) -> String {
    use lilypad_chain::Outcome as O;
    match o {
        O::Settled { challenge: lilypad_chain::Challenge::Unchallenged, .. } => "was settled (its challenge window had passed)".into(),
        O::Settled { challenge: lilypad_chain::Challenge::Rejected, .. } => "was challenged and ruled right by the mediator, then settled".into(),
        O::Settled { challenge: lilypad_chain::Challenge::Nondeterministic, .. } => {
            "was challenged and its module ruled non-deterministic by the mediator, then settled".into()
        }
        O::Settled { challenge: lilypad_chain::Challenge::MediationTimedOut, .. } => "was challenged, not ruled on in time (the result stands), then settled".into(),
        O::Cancelled => "was cancelled by its creator".into(),
        O::Expired => "expired (nobody matched it in time)".into(),
        O::ResultTimedOut => "timed out (no result in time)".into(),
        O::Upheld { .. } => "was ruled wrong by the mediator (challenge upheld)".into(),
    }
}
