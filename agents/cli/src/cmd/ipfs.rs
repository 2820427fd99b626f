//! `lilypad ipfs`: content addressing, the same CIDs as `ipfs add -r --cid-version=1`.

use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum IpfsCommand {
    /// Print the CID of a file or folder.
    Add { path: PathBuf },
    /// Fetch a CID from a gateway into a folder, verifying every block.
    Get {
        cid: String,
        dest: PathBuf,
        #[arg(long, env = "LILYPAD_OUTPUTS_GATEWAY", default_value = "http://127.0.0.1:8090")]
        gateway: String,
    },
}

impl IpfsCommand {
    pub async fn run(self) -> eyre::Result<()> {
        match self {
            IpfsCommand::Add { path } => {
                let cid = tokio::task::spawn_blocking(move || lilypad_store::cid_of_path(&path)).await??;
                println!("{cid}");
            }
            IpfsCommand::Get { cid, dest, gateway } => {
                let cid = lilypad_store::parse_cid(&cid)?;
                let files = lilypad_store::fetch(&gateway, &cid, &dest).await?;
                println!("fetched and verified {} files into {}", files.len(), dest.display());
            }
        }
        Ok(())
    }
}
