//! Which chain to talk to and as whom: flags, then environment, then the local devnet's file.

use std::path::{Path, PathBuf};

use eyre::{eyre, WrapErr};
use lilypad_chain::{ChainClient, Deployment};
use serde::{Deserialize, Serialize};

/// What `lilypad devnet` writes to `<data-dir>/devnet.json` so that the other commands find
/// it with no flags.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevnetInfo {
    pub rpc_url: String,
    pub deployment: PathBuf,
    /// The resource provider's outputs gateway.
    pub gateway: String,
    /// The resource provider's libp2p node (bitswap): multiaddrs ending in `/p2p/<peer id>`.
    #[serde(default)]
    pub p2p: Vec<String>,
    /// Module folders the devnet published.
    pub modules: Vec<PathBuf>,
    /// The devnet's IPFS node: a gateway (`/ipfs/<cid>`) that also takes `dag/import`
    /// (where `lilypad module publish` puts module folders and image archives).
    #[serde(default)]
    pub ipfs: String,
    /// Well-known devnet keys by role (public test keys, never use them elsewhere).
    pub job_creator_key: String,
    pub solver_key: String,
    pub provider_key: String,
}

impl DevnetInfo {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("devnet.json")
    }

    pub fn load(data_dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(Self::path(data_dir)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// `--config` file (TOML), the lowest layer under flags and environment:
///
/// ```toml
/// rpc_url = "https://arb-sepolia.example/rpc"
/// deployment = "421614.json"   # a relative path is read from this file's folder
/// gateway = "https://provider.example/"
/// # private_key = "0x..."   # better: WEB3_PRIVATE_KEY in the environment
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub rpc_url: Option<String>,
    pub deployment: Option<PathBuf>,
    pub private_key: Option<String>,
    pub gateway: Option<String>,
    /// IPFS gateway modules and image archives are fetched from.
    pub ipfs_gateway: Option<String>,
    /// Kubo RPC API that `lilypad module publish` imports module folders and images into.
    pub ipfs_api: Option<String>,
}

impl ConfigFile {
    /// `path`, or `<data-dir>/config.toml` when it exists.
    pub fn load(path: Option<&Path>, data_dir: &Path) -> eyre::Result<ConfigFile> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (data_dir.join("config.toml"), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut file: ConfigFile = toml::from_str(&text).wrap_err_with(|| format!("config file {}", path.display()))?;
                // A relative path in the file means the same wherever an agent is started from
                // (a systemd unit's working folder is not the operator's): the file's own folder.
                if let (Some(dep), Some(folder)) = (&file.deployment, path.parent()) {
                    if dep.is_relative() {
                        file.deployment = Some(folder.join(dep));
                    }
                }
                Ok(file)
            }
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
            Err(e) => Err(eyre!("config file {}: {e}", path.display())),
        }
    }
}

#[derive(clap::Args, Clone, Debug, Default)]
pub struct NetworkArgs {
    /// A named network: `devnet` (the local one `lilypad devnet` runs; the default), or a name
    /// whose settings are in <data-dir>/networks/<name>.toml (same keys as --config).
    #[arg(long, short = 'n', env = "LILYPAD_NETWORK")]
    pub network: Option<String>,
    /// Config file (TOML: rpc_url, deployment, gateway, private_key); default
    /// <data-dir>/config.toml if present. Flags and environment override it.
    #[arg(long, env = "LILYPAD_CONFIG")]
    pub config: Option<PathBuf>,
    /// JSON-RPC URL of the chain (default: the local devnet's).
    #[arg(long, env = "WEB3_RPC_URL")]
    pub rpc_url: Option<String>,
    /// The deployment file (default: the local devnet's, else deployments/<chainId>.json).
    #[arg(long, env = "LILYPAD_DEPLOYMENT")]
    pub deployment: Option<PathBuf>,
    /// Private key to sign with (default on the devnet: its well-known key for the role).
    /// Prefer WEB3_PRIVATE_KEY or --private-key-file: a key on the command line shows in `ps`
    /// to every local user.
    #[arg(long, env = "WEB3_PRIVATE_KEY", hide_env_values = true)]
    pub private_key: Option<String>,
    /// File holding the private key to sign with (hex, one line; readable by its owner only,
    /// e.g. `chmod 600`). Overrides --private-key and WEB3_PRIVATE_KEY.
    #[arg(long, env = "LILYPAD_PRIVATE_KEY_FILE")]
    pub private_key_file: Option<PathBuf>,
    /// IPFS gateway to fetch published modules and image archives from (default: the config
    /// file's ipfs_gateway, else the devnet's IPFS node).
    #[arg(long, env = "LILYPAD_IPFS_GATEWAY")]
    pub ipfs_gateway: Option<String>,
}

/// A resolved network.
pub struct Network {
    pub rpc_url: String,
    pub deployment: Deployment,
    pub private_key: Option<String>,
    pub devnet: Option<DevnetInfo>,
    /// Outputs gateway from the config file.
    pub gateway: Option<String>,
    /// IPFS gateways for modules and image archives, first to try first.
    pub ipfs_gateways: Vec<String>,
    /// Kubo RPC API to publish modules into (config file, else the devnet's IPFS node).
    pub ipfs_api: Option<String>,
}

impl std::fmt::Debug for Network {
    // never print the key
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("rpc_url", &self.rpc_url).field("chain", &self.deployment.chain_id).finish()
    }
}

impl NetworkArgs {
    /// Flags over environment over the devnet's file. `role_key` picks the devnet key to use
    /// when none is given.
    pub fn resolve_with(&self, data_dir: &Path, role_key: impl Fn(&DevnetInfo) -> String) -> eyre::Result<Network> {
        let named = match self.network.as_deref() {
            None | Some("devnet") => None,
            Some(name) => {
                let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !ok {
                    return Err(eyre!("network names are letters, digits, '-' and '_': {name:?}"));
                }
                let path = data_dir.join("networks").join(format!("{name}.toml"));
                if !path.exists() {
                    return Err(eyre!("unknown network {name:?}: write its settings to {} (rpc_url, deployment, gateway)", path.display()));
                }
                Some(path)
            }
        };
        let file = ConfigFile::load(self.config.as_deref().or(named.as_deref()), data_dir)?;
        if named.is_some() && self.config.is_some() {
            return Err(eyre!("give --network or --config, not both"));
        }
        if let Some(path) = &named {
            if file.rpc_url.is_none() && self.rpc_url.is_none() || file.deployment.is_none() && self.deployment.is_none() {
                return Err(eyre!("{} must set rpc_url and deployment", path.display()));
            }
        }
        let key = match &self.private_key_file {
            Some(path) => Some(read_key_file(path)?),
            None => {
                if let Some(key) = &self.private_key {
                    warn_if_key_in_argv(key);
                }
                self.private_key.clone()
            }
        };
        let layered = NetworkArgs {
            network: None,
            config: None,
            rpc_url: self.rpc_url.clone().or(file.rpc_url),
            deployment: self.deployment.clone().or(file.deployment),
            private_key: key.or(file.private_key),
            private_key_file: None,
            ipfs_gateway: None,
        };
        let mut net = layered.resolve_layered(data_dir, role_key)?;
        net.gateway = file.gateway;
        let devnet_ipfs = net.devnet.as_ref().filter(|d| !d.ipfs.is_empty() && named.is_none()).map(|d| d.ipfs.clone());
        net.ipfs_gateways = self.ipfs_gateway.clone().or(file.ipfs_gateway).or(devnet_ipfs.clone()).into_iter().collect();
        net.ipfs_api = file.ipfs_api.or(devnet_ipfs);
        Ok(net)
    }

    fn resolve_layered(&self, data_dir: &Path, role_key: impl Fn(&DevnetInfo) -> String) -> eyre::Result<Network> {
        let devnet = DevnetInfo::load(data_dir);
        let rpc_url = match (&self.rpc_url, &devnet) {
            (Some(u), _) => u.clone(),
            (None, Some(d)) => d.rpc_url.clone(),
            (None, None) => {
                return Err(eyre!(
                    "no network: no devnet in the data folder {dir}: start a local one with `lilypad devnet` (in another \
                     terminal), or pass --rpc-url and --deployment. A devnet started with --data-dir is found only \
                     with the same folder here: `LILYPAD_DATA_DIR=<its folder> lilypad ...` or `lilypad --data-dir <its folder> ...`",
                    dir = data_dir.display()
                ))
            }
        };
        let deployment_path = match (&self.deployment, &devnet) {
            (Some(p), _) => p.clone(),
            (None, Some(d)) if self.rpc_url.is_none() => d.deployment.clone(),
            _ => return Err(eyre!("which contracts? pass --deployment deployments/<chainId>.json")),
        };
        let deployment = Deployment::load(&deployment_path)?;
        let private_key = self.private_key.clone().or_else(|| devnet.as_ref().filter(|_| self.rpc_url.is_none()).map(&role_key));
        Ok(Network { rpc_url, deployment, private_key, devnet, gateway: None, ipfs_gateways: Vec::new(), ipfs_api: None })
    }

    pub fn resolve(&self, data_dir: &Path) -> eyre::Result<Network> {
        self.resolve_with(data_dir, |d| d.solver_key.clone())
    }
}

/// Reads a private key from `path`: one line of hex, in a file no one but its owner may read.
pub fn read_key_file(path: &Path) -> eyre::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).wrap_err_with(|| format!("private key file {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(eyre!(
            "private key file {} is readable by other users (mode {mode:o}): `chmod 600 {}` and rotate the key if others could read it",
            path.display(),
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).wrap_err_with(|| format!("private key file {}", path.display()))?;
    let key = text.trim();
    if key.is_empty() || key.lines().count() != 1 {
        return Err(eyre!("private key file {} must hold one line: the key in hex", path.display()));
    }
    Ok(key.to_string())
}

/// Warns when the key came from the command line (not from WEB3_PRIVATE_KEY, which clap reads
/// into the same field): every local user can read it with `ps`.
fn warn_if_key_in_argv(key: &str) {
    if std::env::var("WEB3_PRIVATE_KEY").is_ok_and(|k| k == key) {
        return;
    }
    tracing::warn!("--private-key shows in `ps` to every user of this machine: use --private-key-file or WEB3_PRIVATE_KEY instead");
    eprintln!("warning: --private-key shows in `ps` to every user of this machine: use --private-key-file or WEB3_PRIVATE_KEY instead");
}

/// The data folder when none is given (`--data-dir`, `LILYPAD_DATA_DIR`): `$XDG_DATA_HOME/lilypad`
/// when that is set to an absolute path, else `$HOME/.local/share/lilypad`. Never a folder in
/// the shared `/tmp`, where another local user could make it first.
pub fn default_data_dir() -> eyre::Result<PathBuf> {
    data_dir_from(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
}

fn data_dir_from(xdg_data_home: Option<std::ffi::OsString>, home: Option<std::ffi::OsString>) -> eyre::Result<PathBuf> {
    let absolute = |v: Option<std::ffi::OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(xdg) = absolute(xdg_data_home) {
        return Ok(xdg.join("lilypad"));
    }
    if let Some(home) = absolute(home) {
        return Ok(home.join(".local").join("share").join("lilypad"));
    }
    Err(eyre!("no data folder: neither XDG_DATA_HOME nor HOME is set to an absolute path; pass --data-dir or set LILYPAD_DATA_DIR"))
}

/// Checks the data folder ([`check_data_dir`]) and makes whatever of it is missing, each new
/// folder 0700 (readable by this user only, whatever the umask allows).
pub fn prepare_data_dir(path: &Path) -> eyre::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    check_data_dir(path)?;
    let mut missing = Vec::new();
    let mut at = Some(path);
    while let Some(dir) = at.filter(|d| !d.as_os_str().is_empty() && std::fs::symlink_metadata(d).is_err()) {
        missing.push(dir.to_path_buf());
        at = dir.parent();
    }
    for dir in missing.iter().rev() {
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .wrap_err_with(|| format!("making the data folder {} private", dir.display()))?,
            // made meanwhile (another agent starting): checked below like any other
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(eyre!("cannot make the data folder {}: {e} (pass --data-dir or set LILYPAD_DATA_DIR)", dir.display())),
        }
    }
    // A folder someone else made between the check and now is caught here.
    check_data_dir(path)
}

/// Writes `bytes` to `path` (created or truncated) readable and writable by this user only
/// (0600): agent state that could redirect an agent or holds keys.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // an existing file keeps its mode through open: set it
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Refuses a data folder another local user could have made or could change: one (or a parent
/// up to a sticky, root-owned folder such as `/tmp`) owned by someone else, or writable by
/// group or others. Such a folder's `devnet.json` or `config.toml` could point this agent at
/// another RPC, market or gateway. Folders not created yet pass (they are made 0700).
pub fn check_data_dir(path: &Path) -> eyre::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX);
    let mut at = Some(path);
    while let Some(dir) = at {
        at = dir.parent();
        let Ok(meta) = std::fs::symlink_metadata(dir) else { continue };
        let mode = meta.permissions().mode();
        let sticky = mode & 0o1000 != 0;
        let owner = meta.uid();
        if sticky && owner == 0 {
            break; // /tmp: only what is below it matters, and that is checked
        }
        if owner != me && owner != 0 {
            return Err(eyre!(
                "data folder {}: {} belongs to another user (uid {owner}), who could change its settings; use a folder of your own (--data-dir or DATA_DIR)",
                path.display(),
                dir.display()
            ));
        }
        if mode & 0o022 != 0 && !meta.file_type().is_symlink() {
            return Err(eyre!(
                "data folder {}: {} is writable by other users (mode {:o}); `chmod go-w {}` or use another folder (--data-dir or DATA_DIR)",
                path.display(),
                dir.display(),
                mode & 0o7777,
                dir.display()
            ));
        }
    }
    Ok(())
}

impl Network {
    pub async fn connect(&self, needs_signer: bool) -> eyre::Result<ChainClient> {
        if needs_signer && self.private_key.is_none() {
            return Err(eyre!("a private key is needed: set WEB3_PRIVATE_KEY or pass --private-key"));
        }
        ChainClient::connect(&self.rpc_url, self.private_key.as_deref(), self.deployment.clone())
            .await
            .wrap_err_with(|| format!("connecting to {}", self.rpc_url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(dir: &Path, name: &str, chain: u64) -> PathBuf {
        let p = dir.join(name);
        let json = serde_json::json!({
            "chainId": chain, "startBlock": 0, "owner": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
            "token": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "market": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
            "solverFeeBps": 500, "collateralBps": 20000, "mediatorFee": "1", "challengeBond": "2",
            "matchTimeout": 1, "challengeWindow": 1, "mediationTimeout": 1, "callbackGas": 1 });
        std::fs::write(&p, json.to_string()).unwrap();
        p
    }

    #[test]
    fn flags_override_the_config_file_which_overrides_the_devnet() {
        let dir = tempfile::tempdir().unwrap();
        let file_dep = deployment(dir.path(), "file.json", 1);
        let flag_dep = deployment(dir.path(), "flag.json", 2);
        std::fs::write(
            dir.path().join("config.toml"),
            format!("rpc_url = \"http://file:1\"\ndeployment = \"{}\"\ngateway = \"http://gw\"\n", file_dep.display()),
        )
        .unwrap();
        let none = NetworkArgs::default();
        let net = none.resolve(dir.path()).unwrap();
        assert_eq!(net.rpc_url, "http://file:1");
        assert_eq!(net.deployment.chain_id, 1);
        assert_eq!(net.gateway.as_deref(), Some("http://gw"));
        let flags = NetworkArgs { rpc_url: Some("http://flag:2".into()), deployment: Some(flag_dep), ..Default::default() };
        let net = flags.resolve(dir.path()).unwrap();
        assert_eq!(net.rpc_url, "http://flag:2");
        assert_eq!(net.deployment.chain_id, 2);
    }

    #[test]
    fn a_named_network_reads_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let dep = deployment(dir.path(), "421614.json", 421614);
        std::fs::create_dir_all(dir.path().join("networks")).unwrap();
        std::fs::write(
            dir.path().join("networks/testnet.toml"),
            format!("rpc_url = \"https://rpc.example\"\ndeployment = \"{}\"\n", dep.display()),
        )
        .unwrap();
        let args = NetworkArgs { network: Some("testnet".into()), ..Default::default() };
        let net = args.resolve(dir.path()).unwrap();
        assert_eq!(net.rpc_url, "https://rpc.example");
        assert_eq!(net.deployment.chain_id, 421614);
        assert_eq!(net.private_key, None, "no devnet key on a real network");
        let err = NetworkArgs { network: Some("mainnet".into()), ..Default::default() }.resolve(dir.path()).unwrap_err();
        assert!(err.to_string().contains("networks/mainnet.toml"), "{err}");
        let err = NetworkArgs { network: Some("../x".into()), ..Default::default() }.resolve(dir.path()).unwrap_err();
        assert!(err.to_string().contains("network names"), "{err}");
    }

    #[test]
    fn the_shipped_arbitrum_sepolia_file_resolves_with_its_deployment_beside_it() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deployments/networks/arbitrum-sepolia.toml");
        let dir = tempfile::tempdir().unwrap();
        let networks = dir.path().join("networks");
        std::fs::create_dir_all(&networks).unwrap();
        std::fs::copy(&shipped, networks.join("arbitrum-sepolia.toml")).unwrap();
        deployment(&networks, "421614.json", 421614);
        // started from another folder, as a systemd unit is: the relative path is the file's
        let args = NetworkArgs { network: Some("arbitrum-sepolia".into()), ..Default::default() };
        let net = args.resolve(dir.path()).unwrap();
        assert_eq!(net.rpc_url, "https://sepolia-rollup.arbitrum.io/rpc");
        assert_eq!(net.deployment.chain_id, 421614);
        assert_eq!(net.private_key, None);
        assert!(net.ipfs_gateways.is_empty() && net.ipfs_api.is_none(), "nothing of a devnet leaks into a named network");
    }

    #[test]
    fn a_relative_deployment_in_a_config_file_is_read_from_the_files_folder() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("etc");
        std::fs::create_dir_all(&conf).unwrap();
        deployment(&conf, "7.json", 7);
        std::fs::write(conf.join("lilypad.toml"), "rpc_url = \"http://x\"\ndeployment = \"7.json\"\n").unwrap();
        let args = NetworkArgs { config: Some(conf.join("lilypad.toml")), ..Default::default() };
        assert_eq!(args.resolve(dir.path()).unwrap().deployment.chain_id, 7);
    }

    #[test]
    fn no_network_says_how_to_get_one() {
        let dir = tempfile::tempdir().unwrap();
        let err = NetworkArgs::default().resolve(dir.path()).unwrap_err().to_string();
        assert!(err.contains("lilypad devnet"), "{err}");
        std::fs::write(dir.path().join("config.toml"), "rpc = 1").unwrap();
        let err = format!("{:#}", NetworkArgs::default().resolve(dir.path()).unwrap_err());
        assert!(err.contains("config.toml"), "{err}");
    }

    #[test]
    fn a_key_file_is_read_and_one_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let dep = deployment(dir.path(), "d.json", 5);
        let key = dir.path().join("key");
        std::fs::write(&key, "0xabc123\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let args = NetworkArgs { rpc_url: Some("http://x".into()), deployment: Some(dep), private_key_file: Some(key.clone()), ..Default::default() };
        assert_eq!(args.resolve(dir.path()).unwrap().private_key.as_deref(), Some("0xabc123"));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = args.resolve(dir.path()).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn the_default_data_folder_is_private_to_the_user_not_in_tmp() {
        let dir = data_dir_from(Some("/x/data".into()), Some("/home/u".into())).unwrap();
        assert_eq!(dir, Path::new("/x/data/lilypad"));
        let dir = data_dir_from(None, Some("/home/u".into())).unwrap();
        assert_eq!(dir, Path::new("/home/u/.local/share/lilypad"));
        // a relative XDG_DATA_HOME is ignored, as the XDG spec says
        let dir = data_dir_from(Some("rel".into()), Some("/home/u".into())).unwrap();
        assert_eq!(dir, Path::new("/home/u/.local/share/lilypad"));
        let err = data_dir_from(None, None).unwrap_err().to_string();
        assert!(err.contains("--data-dir"), "{err}");
    }

    #[test]
    fn a_new_data_folder_is_made_0700() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("share/lilypad");
        prepare_data_dir(&data).unwrap();
        for made in [dir.path().join("share"), data.clone()] {
            let mode = std::fs::metadata(&made).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", made.display());
        }
        // again: an existing private folder passes
        prepare_data_dir(&data).unwrap();
    }

    #[test]
    fn a_data_folder_of_another_user_is_refused() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        let me = std::fs::metadata("/proc/self").unwrap().uid();
        // Giving a folder to another user needs root (CI runs as root); as anyone else there is
        // no folder of another user to make.
        if me != 0 {
            eprintln!("skipped: giving a folder to another user needs root");
            return;
        }
        std::os::unix::fs::chown(&data, Some(4242), None).unwrap();
        let err = prepare_data_dir(&data).unwrap_err().to_string();
        assert!(err.contains("belongs to another user"), "{err}");
        let err = prepare_data_dir(&data.join("inner")).unwrap_err().to_string();
        assert!(err.contains("belongs to another user"), "a parent counts too: {err}");
        assert!(!data.join("inner").exists(), "nothing is made in a refused folder");
    }

    #[test]
    fn private_files_are_0600_even_when_they_existed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("devnet.json");
        std::fs::write(&file, "old").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&file, b"new").unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&file).unwrap(), b"new");
        let fresh = dir.path().join("fresh.json");
        write_private(&fresh, b"x").unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_data_folder_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        check_data_dir(&data).unwrap();
        check_data_dir(&data.join("not-yet")).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_data_dir(&data).unwrap_err().to_string();
        assert!(err.contains("writable by other users"), "{err}");
        let err = check_data_dir(&data.join("inner")).unwrap_err().to_string();
        assert!(err.contains("writable by other users"), "a parent counts too: {err}");
    }

    #[test]
    fn the_key_is_never_printed() {
        let net = Network {
            rpc_url: "http://x".into(),
            deployment: serde_json::from_str(&std::fs::read_to_string(deployment(tempfile::tempdir().unwrap().path(), "d.json", 3)).unwrap()).unwrap(),
            private_key: Some("0xdeadbeefsecret".into()),
            devnet: None,
            gateway: None,
            ipfs_gateways: Vec::new(),
            ipfs_api: None,
        };
        assert!(!format!("{net:?}").contains("deadbeef"));
    }
}
