//! `lilypad keeper`: call the market's permissionless exits once they are due.

use std::path::Path;
use std::time::Duration;

use crate::network::NetworkArgs;

#[derive(clap::Args, Debug)]
pub struct KeeperArgs {
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Seconds past a deadline before acting, leaving the parties time to go first (a provider
    /// settles its own results).
    #[arg(long, env = "LILYPAD_KEEPER_GRACE_SECS", default_value_t = 10)]
    pub grace_secs: u64,
    /// How often to look for new events, in milliseconds.
    #[arg(long, env = "LILYPAD_POLL_MS", default_value_t = 1000)]
    pub poll_ms: u64,
}

impl KeeperArgs {
    pub async fn run(self, data_dir: &Path) -> eyre::Result<()> {
        let net = self.network.resolve_with(data_dir, |_| lilypad_devnet::accounts::KEEPER.to_string())?;
        let client = net.connect(true).await?;
        let options = lilypad_keeper::KeeperOptions {
            checkpoint: Some(data_dir.join("keeper").join(format!("{}.json", client.address()?))),
            poll: Duration::from_millis(self.poll_ms.max(1)),
            grace_secs: self.grace_secs,
            ..Default::default()
        };
        let keeper = lilypad_keeper::Keeper::start(client, options).await?;
        keeper.run(crate::shutdown_signal()).await?;
        Ok(())
    }
}
