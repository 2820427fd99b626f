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
}

impl SolverArgs {
    pub async fn run(self, data_dir: &Path) -> eyre::Result<()> {
        let net = self.network.resolve(data_dir)?;
        let client = net.connect(true).await?;
        let options = lilypad_solver::SolverOptions {
            checkpoint: Some(client.state_dir(data_dir)?.claim(format!("solver/{}.json", client.address()?))?),
            poll: std::time::Duration::from_millis(self.poll_ms.max(1)),
            ..Default::default()
        };
        let solver = lilypad_solver::Solver::start(client, options).await?;
        solver.run(crate::shutdown_signal()).await?;
        Ok(())
    }
}
