//! `lilypad mediator`: run a mediator.

use std::path::{Path, PathBuf};

use crate::network::NetworkArgs;

#[derive(clap::Args, Debug)]
pub struct MediatorArgs {
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Module folders it can re-run (repeatable); others are fetched by CID from the IPFS
    /// gateway (folder and pinned image archive).
    #[arg(long = "module")]
    pub modules: Vec<PathBuf>,
    /// Where to fetch providers' results from, to compare them under a module's declared
    /// comparison (default: the devnet provider's gateway).
    #[arg(long, env = "LILYPAD_OUTPUTS_GATEWAY")]
    pub gateway: Option<String>,
    /// The most the cache of jobs' file and folder inputs keeps on disk, in bytes (suffixes
    /// KiB, MiB, GiB, TiB, or KB, MB, GB, TB): the least recently used inputs no running job
    /// holds are removed first, and a job whose input is larger is refused (given back).
    #[arg(long, env = "LILYPAD_INPUT_CACHE_MAX", default_value = "10GiB", value_parser = super::parse_bytes)]
    pub input_cache_max: u64,
}

impl MediatorArgs {
    pub async fn run(self, data_dir: &Path) -> eyre::Result<()> {
        let net = self.network.resolve_with(data_dir, |_| lilypad_devnet::accounts::MEDIATOR.to_string())?;
        let gateway = self.gateway.or_else(|| net.gateway.clone()).or_else(|| net.devnet.as_ref().map(|d| d.gateway.clone()).filter(|g| !g.is_empty()));
        let client = net.connect(true).await?;
        let options = lilypad_mediator::MediatorOptions {
            modules: self.modules,
            ipfs_gateways: net.ipfs_gateways.clone(),
            data_dir: client.state_dir(data_dir)?.claim(format!("mediator/{}", client.address()?))?,
            poll: std::time::Duration::from_millis(250),
            gateway,
            input_cache_max: self.input_cache_max,
        };
        let mediator = lilypad_mediator::Mediator::start(client, options).await?;
        mediator.run(crate::shutdown_signal()).await?;
        Ok(())
    }
}
