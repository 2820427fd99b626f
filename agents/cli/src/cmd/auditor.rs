//! `lilypad auditor`: challenge a random share of results within their challenge windows.

use std::path::Path;

use crate::network::NetworkArgs;

#[derive(clap::Args, Debug)]
pub struct AuditorArgs {
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Share of results to challenge, from 0 to 1.
    #[arg(long, value_parser = super::parse_rate)]
    pub rate: f64,
    /// Seed of the random pick (default: a random one; keep it secret from providers).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl AuditorArgs {
    pub async fn run(self, data_dir: &Path) -> eyre::Result<()> {
        let net = self.network.resolve_with(data_dir, |_| lilypad_devnet::accounts::AUDITOR.to_string())?;
        let client = net.connect(true).await?;
        let seed = self.seed.unwrap_or_else(random_seed);
        let options = lilypad_mediator::auditor::AuditorOptions { rate: self.rate, seed, poll: std::time::Duration::from_millis(250) };
        let auditor = lilypad_mediator::auditor::Auditor::start(client, options).await?;
        auditor.run(crate::shutdown_signal()).await?;
        Ok(())
    }
}

/// A seed nobody else knows: the clock's nanoseconds and this process, hashed.
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let h = alloy::primitives::keccak256(format!("{nanos}-{}", std::process::id()));
    u64::from_be_bytes(h[..8].try_into().unwrap_or([0; 8]))
}
