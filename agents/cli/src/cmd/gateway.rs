//! `lilypad gateway`: serve the web2 gateway, and administer its accounts, keys and credit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eyre::{eyre, WrapErr};
use lilypad_gateway::{Db, Limits, Options};

use crate::network::NetworkArgs;

#[derive(clap::Args, Debug)]
pub struct GatewayArgs {
    /// The database: a SQLite file path or a postgres:// URL (default <data-dir>/gateway/gateway.db).
    #[arg(long, global = true, env = "LILYPAD_GATEWAY_DB")]
    pub db: Option<String>,
    #[command(subcommand)]
    pub command: GatewayCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum GatewayCommand {
    /// Serve the API and dashboard (pays for jobs from this network key: on the devnet, its job creator's).
    Serve {
        #[arg(long, env = "LILYPAD_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[command(flatten)]
        network: NetworkArgs,
        /// Module folders whose inputs are checked before charging (repeatable; default: the devnet's).
        #[arg(long = "module")]
        modules: Vec<PathBuf>,
        /// Where job outputs are fetched from (default: the config file's gateway, else the
        /// devnet provider's).
        #[arg(long, env = "LILYPAD_OUTPUTS_GATEWAY")]
        outputs_gateway: Option<String>,
        /// Requests per second per API key, sustained.
        #[arg(long, default_value_t = 5.0)]
        rate: f64,
        /// Requests per API key at once.
        #[arg(long, default_value_t = 20)]
        burst: u32,
        /// Largest request body, bytes.
        #[arg(long, default_value_t = 64 * 1024)]
        max_body: usize,
        /// Also fetch outputs from providers' announced endpoints on loopback, private,
        /// link-local and other non-public addresses (refused by default: the URLs are the
        /// providers' choice). On for the devnet, where everything is on loopback.
        #[arg(long, env = "LILYPAD_ALLOW_PRIVATE_ENDPOINTS")]
        allow_private_endpoints: bool,
        /// IPFS node (Kubo RPC API) uploads are put on, for providers to fetch them (default:
        /// the config file's ipfs_api, else the devnet's IPFS node; none: uploads are served
        /// only at this gateway's /ipfs/<cid>).
        #[arg(long, env = "LILYPAD_IPFS_API")]
        ipfs_api: Option<String>,
        /// Largest upload (POST /api/v1/uploads), bytes.
        #[arg(long, env = "LILYPAD_GATEWAY_MAX_UPLOAD", default_value_t = 100 << 20)]
        max_upload: u64,
        /// Price of uploads per MiB (pro rata, rounded up): token base units, or LP (e.g. 0.001LP).
        #[arg(long, env = "LILYPAD_GATEWAY_UPLOAD_PRICE", default_value = "0.001LP")]
        upload_price: String,
        /// How long uploads are kept, hours; then their blocks are removed from the gateway.
        #[arg(long, env = "LILYPAD_GATEWAY_UPLOAD_RETENTION_HOURS", default_value_t = 168)]
        upload_retention_hours: u64,
    },
    /// API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Prepaid credit.
    Credit {
        #[command(subcommand)]
        command: CreditCommand,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key for an account (created if new); the key is printed once.
    Create { account: String },
    /// Revoke a key by its id (lpk_...).
    Revoke { key_id: String },
}

#[derive(clap::Subcommand, Debug)]
pub enum CreditCommand {
    /// Add credit: an amount in token base units, or with an LP suffix (e.g. 10LP).
    Add { account: String, amount: String },
}

const LP: u128 = 1_000_000_000_000_000_000;

fn parse_amount(s: &str) -> eyre::Result<u128> {
    let s = s.trim();
    if let Some(lp) = s.strip_suffix("LP").or_else(|| s.strip_suffix("lp")) {
        let (whole, frac) = lp.trim().split_once('.').unwrap_or((lp.trim(), ""));
        if frac.len() > 18 {
            return Err(eyre!("{s:?}: at most 18 decimals"));
        }
        let whole: u128 = whole.parse().wrap_err_with(|| format!("{s:?} is not an amount"))?;
        let frac_units: u128 = if frac.is_empty() { 0 } else { format!("{frac:0<18}").parse().wrap_err_with(|| format!("{s:?} is not an amount"))? };
        return whole.checked_mul(LP).and_then(|w| w.checked_add(frac_units)).ok_or_else(|| eyre!("{s:?} is too large"));
    }
    s.parse().wrap_err_with(|| format!("{s:?} is not an amount: give base units (e.g. 1050000000000000000) or LP (e.g. 10LP)"))
}

fn db_spec(args: &GatewayArgs, data_dir: &Path) -> String {
    args.db.clone().unwrap_or_else(|| data_dir.join("gateway").join("gateway.db").display().to_string())
}

impl GatewayArgs {
    pub async fn run(self, data_dir: &Path) -> eyre::Result<()> {
        gateway(self, data_dir).await
    }
}

async fn gateway(args: GatewayArgs, data_dir: &Path) -> eyre::Result<()> {
    let spec = db_spec(&args, data_dir);
    let db = Db::connect(&spec).await?;
    match args.command {
        GatewayCommand::Keys { command: KeysCommand::Create { account } } => {
            let (account, key) = db.create_key(&account).await?;
            println!("{}", key.secret);
            eprintln!("created key {} for account {:?} (balance {}); it is shown only this once", key.id, account.name, account.balance);
        }
        GatewayCommand::Keys { command: KeysCommand::Revoke { key_id } } => {
            if db.revoke_key(&key_id).await? {
                println!("revoked {key_id}");
            } else {
                println!("{key_id} was already revoked");
            }
        }
        GatewayCommand::Credit { command: CreditCommand::Add { account, amount } } => {
            let amount = parse_amount(&amount)?;
            let balance = db.add_credit(&account, amount, None, "credit added by the operator").await?;
            println!("account {account:?}: added {amount}, balance {}", balance.map(|b| b.to_string()).unwrap_or_default());
        }
        GatewayCommand::Serve {
            listen,
            network,
            modules,
            outputs_gateway,
            rate,
            burst,
            max_body,
            allow_private_endpoints,
            ipfs_api,
            max_upload,
            upload_price,
            upload_retention_hours,
        } => {
            let price_per_mib = parse_amount(&upload_price).wrap_err("--upload-price")?;
            let net = network.resolve_with(data_dir, |d| d.job_creator_key.clone())?;
            let client = net.connect(true).await?;
            let module_dirs = if modules.is_empty() { net.devnet.as_ref().map(|d| d.modules.clone()).unwrap_or_default() } else { modules };
            let ipfs_gateway = outputs_gateway
                .or_else(|| net.gateway.clone())
                .or_else(|| net.devnet.as_ref().map(|d| d.gateway.clone()).filter(|g| !g.is_empty()));
            // the devnet is all loopback: its providers announce loopback endpoints (only when
            // serving the devnet itself, not another chain with a devnet.json lying around)
            let on_devnet = net.devnet.as_ref().is_some_and(|d| d.rpc_url == net.rpc_url);
            let allow_private = allow_private_endpoints || on_devnet;
            if allow_private {
                tracing::info!(devnet = on_devnet, "outputs may be fetched from announced endpoints on private and loopback addresses");
            }
            if ipfs_gateway.is_none() {
                tracing::info!("no --outputs-gateway: outputs are fetched only from the endpoints providers announced on chain");
            }
            let ipfs_api = ipfs_api.or_else(|| net.ipfs_api.clone());
            if ipfs_api.is_none() {
                tracing::warn!("no IPFS node for uploads (--ipfs-api): uploads are served only at this gateway's /ipfs/<cid>, so providers must list its public URL among their --ipfs-gateway");
            }
            // the outputs it fetched are this chain's (the database, by default next to them, is not moved)
            let state = client.state_dir(data_dir)?;
            state.set_aside("gateway/outputs")?;
            let options = Options {
                listen,
                module_dirs,
                ipfs_gateway,
                data_dir: state.join("gateway"),
                limits: Limits { rate_per_sec: rate, burst, body_bytes: max_body },
                reconcile_every: Duration::from_secs(2),
                endpoint_policy: lilypad_gateway::endpoints::EndpointPolicy { allow_private },
                uploads: lilypad_gateway::uploads::UploadOptions {
                    max_bytes: max_upload,
                    price_per_mib,
                    retention: Duration::from_secs(upload_retention_hours.saturating_mul(3600)),
                    ipfs_api,
                },
            };
            let gw = lilypad_gateway::start(client, Arc::new(db), options).await?;
            println!("Lilypad gateway listening on http://{} (dashboard at /, API at /api/v1, database {})", gw.addr, redact(&spec));
            gw.run_until(crate::shutdown_signal()).await?;
        }
    }
    Ok(())
}

/// The database spec without a password.
fn redact(spec: &str) -> String {
    match (spec.find("://"), spec.find('@')) {
        (Some(s), Some(at)) if at > s => match spec[s + 3..at].find(':') {
            Some(colon) => format!("{}:***{}", &spec[..s + 3 + colon], &spec[at..]),
            None => spec.to_string(),
        },
        _ => spec.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_in_base_units_or_lp() {
        assert_eq!(parse_amount("42").unwrap(), 42);
        assert_eq!(parse_amount("10LP").unwrap(), 10 * LP);
        assert_eq!(parse_amount("1.05LP").unwrap(), 1_050_000_000_000_000_000);
        assert!(parse_amount("x").is_err());
        assert!(parse_amount("1.0000000000000000001LP").is_err());
    }

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(redact("postgres://u:secret@h:5/db"), "postgres://u:***@h:5/db");
        assert_eq!(redact("/tmp/gw.db"), "/tmp/gw.db");
    }
}
