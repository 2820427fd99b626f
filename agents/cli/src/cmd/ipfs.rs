//! `lilypad ipfs`: content addressing, the same CIDs as `ipfs add -r --cid-version=1`.

use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum IpfsCommand {
    /// Print the CID of a file or folder.
    Add {
        /// The file or folder.
        path: PathBuf,
    },
    /// Fetch a CID from an IPFS gateway into a folder, verifying every block.
    Get {
        /// The CID to fetch.
        cid: String,
        /// The folder to fetch it into.
        dest: PathBuf,
        /// The IPFS gateway to fetch from (`/ipfs/<cid>`; `--gateway` is the older name of this
        /// flag).
        #[arg(long = "ipfs-gateway", alias = "gateway", env = "LILYPAD_OUTPUTS_GATEWAY", default_value = "http://127.0.0.1:8090")]
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
