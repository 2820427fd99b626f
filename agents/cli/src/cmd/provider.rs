//! `lilypad resource-provider`: run a resource provider.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::network::NetworkArgs;

#[derive(clap::Args, Debug)]
pub struct ProviderArgs {
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Module folders to offer (repeatable).
    #[arg(long = "module", required_unless_present = "offer_any")]
    pub modules: Vec<PathBuf>,
    /// Price per job, in token units (wei of LP).
    #[arg(long, env = "LILYPAD_PRICE", default_value = "1000000000000000000")]
    pub price: u128,
    /// Collateral to keep deposited, in token units.
    #[arg(long, env = "LILYPAD_COLLATERAL", default_value = "100000000000000000000")]
    pub collateral: u128,
    /// Mediators accepted, as a bitmask of slots (bit i = mediator i, e.g. 0x3 for mediators 0
    /// and 1); kept by the market to the slots taken now. 0 (the default): the market's
    /// default set, chosen by its owner. A job whose mediators are none of these is never
    /// matched to this provider.
    #[arg(long, default_value = "0", value_parser = parse_mediators)]
    pub mediators: u64,
    /// The shortest run window (seconds from the match to its result's deadline) a job matched
    /// to this provider may have: its offers state it, and the market matches nothing shorter.
    #[arg(long, default_value_t = lilypad_provider::OfferTerms::DEFAULT_MIN_RUN_TIMEOUT)]
    pub min_run_timeout: u32,
    /// The longest run window it locks collateral for (at most 2592000, 30 days).
    #[arg(long, default_value_t = lilypad_provider::OfferTerms::DEFAULT_MAX_RUN_TIMEOUT)]
    pub max_run_timeout: u32,
    /// The most gas it forwards to a client contract's callback when it settles (at most
    /// 2000000); the market matches no job asking for more.
    #[arg(long, default_value_t = lilypad_provider::OfferTerms::DEFAULT_MAX_CALLBACK_GAS)]
    pub max_callback_gas: u32,
    /// Where the outputs server listens: it serves this provider's results at
    /// `http://<addr>/ipfs/<cid>` (`--gateway` is the older name of this flag).
    #[arg(long, alias = "gateway", env = "LILYPAD_OUTPUTS_LISTEN", default_value = "127.0.0.1:8090")]
    pub outputs_listen: SocketAddr,
    /// Where others fetch this provider's outputs (an IPFS trustless gateway: `<url>/ipfs/<cid>`),
    /// announced on chain so creators and mediators find them from the chain alone; up to 4,
    /// comma-separated in the variable. Default: `http://<--outputs-listen>` unless that is
    /// 0.0.0.0 (then give this flag: e.g. https://provider.example:8090).
    #[arg(long = "public-url", env = "LILYPAD_PUBLIC_URL", value_delimiter = ',')]
    pub public_urls: Vec<String>,
    /// Where its libp2p node listens (TCP multiaddrs, comma-separated in the variable; e.g.
    /// /ip4/0.0.0.0/tcp/4001): it answers bitswap requests for the outputs it stores, so any
    /// IPFS implementation (Helia, Kubo) can fetch them by CID. Off unless given. No discovery
    /// of any kind: it only answers peers that dial it. Its key is p2p-identity.key (0600) in
    /// the provider's data folder, so its peer id survives restarts.
    #[arg(long = "p2p-listen", env = "LILYPAD_P2P_LISTEN", value_delimiter = ',', value_name = "MULTIADDR")]
    pub p2p_listen: Vec<lilypad_provider::Multiaddr>,
    /// How others dial its libp2p node (e.g. /dns4/provider.example/tcp/4001), announced on
    /// chain with /p2p/<peer id> added; up to 4 endpoints in all with --public-url. Default: the
    /// --p2p-listen addresses unless they are 0.0.0.0 or ::.
    #[arg(long = "public-p2p", env = "LILYPAD_PUBLIC_P2P", value_delimiter = ',', value_name = "MULTIADDR")]
    pub public_p2p: Vec<lilypad_provider::Multiaddr>,
    /// Jobs run at once.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// A Kubo RPC API to also add and pin outputs to (e.g. http://127.0.0.1:5001).
    #[arg(long, env = "LILYPAD_IPFS_API")]
    pub ipfs_api: Option<String>,
    /// Also offer any published module that fits these resources: cpu-milli,ram-mb,disk-mb
    /// (e.g. 2000,4096,10000).
    #[arg(long, value_parser = parse_resources)]
    pub offer_any: Option<lilypad_bindings::Resources>,
    /// Serve WebAssembly modules only, without Docker (none is needed or connected to); the
    /// market is told this provider runs the wasm engine only, so it gets no Docker jobs.
    #[arg(long, env = "LILYPAD_NO_DOCKER")]
    pub no_docker: bool,
    /// Run modules published from git repositories (their build commands run on this host):
    /// only those --allow-git-repo or --allow-git-publisher allow (one of them is needed).
    #[arg(long)]
    pub allow_git_modules: bool,
    /// Git modules from repositories under this prefix: a host (`github.com`) or a host and
    /// leading path (`github.com/lilypad-tech`), whole components. Repeat for more. Implies
    /// --allow-git-modules.
    #[arg(long = "allow-git-repo", value_name = "PREFIX")]
    pub allow_git_repos: Vec<String>,
    /// Git modules published on chain by this account, from any public host. Repeat for more.
    /// Implies --allow-git-modules.
    #[arg(long = "allow-git-publisher", value_name = "ADDRESS")]
    pub allow_git_publishers: Vec<alloy::primitives::Address>,
    /// Do not fetch published modules it has no folder for (by default, with --offer-any,
    /// their folders and image archives are fetched by CID from the IPFS gateway; images
    /// are loaded, never built, so nothing of theirs runs outside the sandbox).
    #[arg(long)]
    pub no_fetch_modules: bool,
    /// The most the cache of jobs' file and folder inputs keeps on disk, in bytes (suffixes
    /// KiB, MiB, GiB, TiB, or KB, MB, GB, TB): the least recently used inputs no running job
    /// holds are removed first, and a job whose input is larger is refused (given back).
    #[arg(long, env = "LILYPAD_INPUT_CACHE_MAX", default_value = "10GiB", value_parser = super::parse_bytes)]
    pub input_cache_max: u64,
    /// How often to look for new events, in milliseconds (`lilypad devnet`'s own agents: 20).
    #[arg(long, env = "LILYPAD_POLL_MS", default_value_t = 250)]
    pub poll_ms: u64,
    /// TEST ONLY flags: added to the command line only when the provider is built with its
    /// `testing` feature (see [`TestingArgs`]).
    #[arg(skip)]
    pub testing: Option<TestingArgs>,
}

/// TEST ONLY flags, on the command line only when the provider has its test hooks
/// ([`lilypad_provider::TestHooks::AVAILABLE`]: the `testing` feature, which `cargo test`
/// enables and release builds do not).
#[derive(clap::Args, Debug, Clone)]
pub struct TestingArgs {
    /// TEST ONLY (never in production): post a wrong result for this share (0 to 1) of the
    /// jobs, to test challenges, audits and mediators against a cheater. Its collateral is
    /// slashed whenever such a result is challenged.
    #[arg(long, hide = true, value_parser = super::parse_rate)]
    pub cheat_rate: Option<f64>,
    /// TEST ONLY: seed of the pick of jobs --cheat-rate cheats on.
    #[arg(long, hide = true, default_value_t = 0)]
    pub cheat_seed: u64,
    /// TEST ONLY: make every run panic (its job must be given back).
    #[arg(long, hide = true)]
    pub test_panic_runs: bool,
}

impl TestingArgs {
    fn hooks(&self) -> lilypad_provider::TestHooks {
        lilypad_provider::TestHooks::new(self.cheat_rate.map(|rate| (rate, self.cheat_seed)), self.test_panic_runs)
    }

    /// Adds these flags to the `resource-provider` subcommand of `command` where the provider
    /// has its test hooks.
    pub fn augment(command: clap::Command) -> clap::Command {
        use clap::Args;
        if !lilypad_provider::TestHooks::AVAILABLE {
            return command;
        }
        command.mut_subcommand("resource-provider", TestingArgs::augment_args)
    }
}

/// A mediator bitmask, decimal or 0x-hex.
fn parse_mediators(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse::<u64>(),
    };
    parsed.map_err(|e| format!("{s:?}: {e} (a bitmask of mediator slots, e.g. 1 or 0x3; 0 = the market's default set)"))
}

fn parse_resources(s: &str) -> Result<lilypad_bindings::Resources, String> {
    let parts: Vec<u32> = s.split(',').map(|p| p.trim().parse::<u32>()).collect::<Result<_, _>>().map_err(|e| format!("{s:?}: {e}"))?;
    match parts[..] {
        [cpu, ram, disk] => Ok(lilypad_bindings::Resources { cpuMilli: cpu, ramMb: ram, diskMb: disk, vramMb: 0, gpus: 0 }),
        _ => Err(format!("{s:?}: expected cpu-milli,ram-mb,disk-mb")),
    }
}

impl ProviderArgs {
    pub async fn run(self, data_dir: &Path) -> eyre::Result<()> {
        // bad flags before anything connects
        git_policy(self.allow_git_modules, &self.allow_git_repos, &self.allow_git_publishers)?;
        let net = self.network.resolve_with(data_dir, |d| d.provider_key.clone())?;
        let client = net.connect(true).await?;
        let testing = self.testing.as_ref().map(TestingArgs::hooks).unwrap_or_default();
        let (allow_git_modules, git_policy) = git_policy(self.allow_git_modules, &self.allow_git_repos, &self.allow_git_publishers)?;
        let options = lilypad_provider::ProviderOptions {
            modules: self.modules,
            price: self.price,
            collateral: self.collateral,
            mediators: self.mediators,
            terms: lilypad_provider::OfferTerms {
                min_run_timeout: self.min_run_timeout,
                max_run_timeout: self.max_run_timeout,
                max_callback_gas: self.max_callback_gas,
            },
            data_dir: client.state_dir(data_dir)?.claim(format!("provider/{}", client.address()?))?,
            outputs_listen: self.outputs_listen,
            public_urls: self.public_urls,
            p2p_listen: self.p2p_listen,
            public_p2p: self.public_p2p,
            concurrency: self.concurrency,
            allow_network: false,
            poll: std::time::Duration::from_millis(self.poll_ms.max(1)),
            ipfs_api: self.ipfs_api,
            offer_any: self.offer_any,
            docker: !self.no_docker,
            allow_git_modules,
            git_policy,
            fetch_modules: !self.no_fetch_modules,
            ipfs_gateways: net.ipfs_gateways.clone(),
            input_cache_max: self.input_cache_max,
            testing,
        };
        let provider = lilypad_provider::Provider::start(client, options).await?;
        provider.run(crate::shutdown_signal()).await?;
        Ok(())
    }
}

/// Whether git modules are on, and which: `--allow-git-repo` prefixes and
/// `--allow-git-publisher` accounts (either turns them on). `--allow-git-modules` alone is
/// refused: it would let anyone who publishes a git module run build commands on this host.
fn git_policy(
    allow_git_modules: bool,
    repos: &[String],
    publishers: &[alloy::primitives::Address],
) -> eyre::Result<(bool, lilypad_module::GitPolicy)> {
    for prefix in repos {
        let trimmed = prefix.trim_end_matches('/');
        // a prefix names a host the host rules accept: no IP literal, no local-only name
        lilypad_module::check_host(&format!("{trimmed}/x"))
            .map_err(|e| eyre::eyre!("--allow-git-repo {prefix:?}: {e}"))?;
    }
    let on = allow_git_modules || !repos.is_empty() || !publishers.is_empty();
    if on && repos.is_empty() && publishers.is_empty() {
        return Err(eyre::eyre!(
            "--allow-git-modules needs --allow-git-repo PREFIX (e.g. github.com/your-org) or --allow-git-publisher ADDRESS: \
             git modules run their build commands on this host, so say whose you run"
        ));
    }
    Ok((on, lilypad_module::GitPolicy { repos: repos.to_vec(), publishers: publishers.to_vec() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::Address;

    #[test]
    fn git_modules_are_taken_only_from_allowed_repos_or_publishers() {
        let trusted = Address::repeat_byte(7);
        let (on, policy) = git_policy(false, &["github.com/lilypad-tech".into()], &[trusted]).unwrap();
        assert!(on, "a policy turns git modules on");
        assert!(policy.check("github.com/lilypad-tech/cowsay", Address::ZERO).is_ok());
        assert!(policy.check("github.com/someone-else/x", Address::ZERO).is_err());
        assert!(policy.check("gitlab.com/anyone/x", trusted).is_ok(), "an allowed publisher's from any public host");

        let (on, policy) = git_policy(false, &[], &[]).unwrap();
        assert!(!on && policy == lilypad_module::GitPolicy::default(), "off by default");

        let err = git_policy(true, &[], &[]).unwrap_err().to_string();
        assert!(err.contains("--allow-git-repo") && err.contains("--allow-git-publisher"), "{err}");
        for bad in ["127.0.0.1", "10.0.0.1/org", "git.local", "localhost/x"] {
            let err = git_policy(true, &[bad.into()], &[]).unwrap_err().to_string();
            assert!(err.contains("--allow-git-repo"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_flags_parse_into_the_policy() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: ProviderArgs,
        }
        let cli = Cli::try_parse_from([
            "x",
            "--offer-any",
            "1000,64,10",
            "--allow-git-repo",
            "github.com/a",
            "--allow-git-repo",
            "example.org",
            "--allow-git-publisher",
            "0x0707070707070707070707070707070707070707",
        ])
        .unwrap();
        assert_eq!(cli.args.allow_git_repos, ["github.com/a", "example.org"]);
        assert_eq!(cli.args.allow_git_publishers, [Address::repeat_byte(7)]);
        assert!(Cli::try_parse_from(["x", "--offer-any", "1000,64,10", "--allow-git-publisher", "not-an-address"]).is_err());
    }
}
