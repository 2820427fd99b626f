//! `lilypad solver`: run a solver.

use std::path::Path;

use crate::network::NetworkArgs;

#[derive(clap::Args, Debug)]
pub struct SolverArgs {
    #[command(flatten)]
    pub network: NetworkArgs,
    /// How often to look for new events, in milliseconds (`lilypad devnet`'s own agents: 20).
    #[arg(long, env = "LILYPAD_POLL_MS", default_value_t = 250)]
    pub poll_ms: u64,
    /// The most unfinished jobs given to a provider that did not announce how many it runs at
    /// once; one that did (every `lilypad resource-provider` does: its --concurrency) gets
    /// twice that, so each of its slots has a job waiting.
    #[arg(long, env = "LILYPAD_MAX_ACTIVE_PER_PROVIDER", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_active_per_provider: u32,
}

impl SolverArgs {
    pub async fn run(self, data_dir: &Path) -> eyre::Result<()> {
        let net = self.network.resolve(data_dir)?;
        let client = net.connect(true).await?;
        let options = lilypad_solver::SolverOptions {
            checkpoint: Some(client.state_dir(data_dir)?.claim(format!("solver/{}.json", client.address()?))?),
            poll: std::time::Duration::from_millis(self.poll_ms.max(1)),
            max_active_per_provider: self.max_active_per_provider,
        };
        let solver = lilypad_solver::Solver::start(client, options).await?;
        solver.run(crate::shutdown_signal()).await?;
        Ok(())
    }
}
