//! `lilypad`: run jobs on the network, run its agents, start a local devnet. Each command is a
//! file of its own under `cmd/`.

mod cmd;
mod env;
mod network;
mod publish;
mod upload;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes of `lilypad run` (and of the other commands, where they apply).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The job ran and failed (non-zero exit code), or was refused on chain.
    pub const JOB_FAILED: u8 = 1;
    /// Bad input: unknown module, bad inputs, bad flags. Nothing was paid.
    pub const BAD_INPUT: u8 = 2;
    /// The job timed out (no match, no result); its payment is refundable.
    pub const TIMEOUT: u8 = 3;
    /// The chain, Docker or the network failed.
    pub const INFRA: u8 = 4;
}

#[derive(Parser)]
#[command(name = "lilypad", version, about = "Run compute jobs on the Lilypad network", propagate_version = true)]
struct Cli {
    /// Folder for downloaded results, agent state and the devnet's files [default:
    /// $XDG_DATA_HOME/lilypad, else ~/.local/share/lilypad; made 0700; refused when another
    /// user owns it or may write to it]
    #[arg(long, global = true, env = "LILYPAD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a module on the network: lilypad run lilysay:0.1.0 -i Message=hello
    Run(cmd::run::RunArgs),
    /// Start a local devnet (Anvil, the contracts, a solver and a resource provider) until Ctrl-C.
    Devnet(cmd::devnet::DevnetArgs),
    /// Run a solver.
    Solver(cmd::solver::SolverArgs),
    /// Run a resource provider.
    ResourceProvider(cmd::provider::ProviderArgs),
    /// Run a mediator.
    Mediator(cmd::mediator::MediatorArgs),
    /// Audit results: challenge a random share of them within their challenge windows (pays
    /// the mediator fee + bond for each, from the market balance or else the token balance).
    Auditor(cmd::auditor::AuditorArgs),
    /// A job as the chain tells it: state, deadlines, result, ruling, payments and its events.
    Job(cmd::job::JobArgs),
    /// Keep the market moving: expire, time out and settle every job past its deadline (the
    /// calls anyone may make), so no payment or collateral sits past its deadline.
    Keeper(cmd::keeper::KeeperArgs),
    /// Challenge a job's result within its challenge window (pays the mediator fee + bond).
    Challenge(cmd::challenge::ChallengeArgs),
    /// Add tokens to your market balance: jobs it covers are paid from it, with no token
    /// approval or transfer per job (and refunds come back to it).
    Deposit(cmd::balance::DepositArgs),
    /// Take tokens out of your free market balance.
    Withdraw(cmd::balance::WithdrawArgs),
    /// Content addressing: the same CIDs as `ipfs add -r --cid-version=1`.
    Ipfs {
        #[command(subcommand)]
        command: cmd::ipfs::IpfsCommand,
    },
    /// The web2 gateway: run and pay for jobs over HTTP with API keys and prepaid credit.
    Gateway(cmd::gateway::GatewayArgs),
    /// Job modules.
    Module {
        #[command(subcommand)]
        command: cmd::module::ModuleCommand,
    },
}

/// The command line, with the provider's TEST ONLY flags where its build has them.
fn command() -> clap::Command {
    use clap::CommandFactory;
    cmd::provider::TestingArgs::augment(Cli::command())
}

fn parse() -> Cli {
    use clap::FromArgMatches;
    let matches = command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let (Command::ResourceProvider(args), Some(("resource-provider", sub))) = (&mut cli.command, matches.subcommand()) {
        if lilypad_provider::TestHooks::AVAILABLE {
            args.testing = Some(cmd::provider::TestingArgs::from_arg_matches(sub).unwrap_or_else(|e| e.exit()));
        }
    }
    cli
}

fn main() -> ExitCode {
    let deprecated = env::apply_deprecated();
    let cli = parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("LILYPAD_LOG_LEVEL")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(default_log_level(&cli.command)))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only on a terminal: a log file (the devnet's, an agent's) gets plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    for warning in deprecated {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(exit::INFRA);
        }
    };
    let code = runtime.block_on(dispatch(cli));
    ExitCode::from(code)
}

fn default_log_level(command: &Command) -> &'static str {
    match command {
        Command::Run(_)
        | Command::Job(_)
        | Command::Challenge(_)
        | Command::Deposit(_)
        | Command::Withdraw(_)
        | Command::Ipfs { .. }
        | Command::Module { .. } => "warn",
        Command::Gateway(g) if !matches!(g.command, cmd::gateway::GatewayCommand::Serve { .. }) => "warn",
        _ => "info",
    }
}

/// Raises the soft limit of open files to the hard one: a service's 1,024 default is what a
/// flood of half-open connections exhausts first (the units also set `LimitNOFILE`).
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write the struct passed; no other memory is touched.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            let wanted = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
                tracing::warn!(soft = limit.rlim_cur, hard = limit.rlim_max, "cannot raise the open-files limit");
            }
        }
    }
}

async fn dispatch(cli: Cli) -> u8 {
    raise_open_files_limit();
    let data_dir = match cli.data_dir.clone().map_or_else(network::default_data_dir, Ok) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return exit::BAD_INPUT;
        }
    };
    if let Err(e) = network::prepare_data_dir(&data_dir) {
        eprintln!("Error: {e:#}");
        return exit::BAD_INPUT;
    }
    let data_dir = &data_dir;
    let result = match cli.command {
        Command::Run(args) => return args.run(data_dir).await,
        Command::Devnet(args) => args.run(data_dir).await,
        Command::Solver(args) => args.run(data_dir).await,
        Command::ResourceProvider(args) => args.run(data_dir).await,
        Command::Mediator(args) => args.run(data_dir).await,
        Command::Auditor(args) => args.run(data_dir).await,
        Command::Keeper(args) => args.run(data_dir).await,
        Command::Job(args) => args.run(data_dir).await,
        Command::Challenge(args) => args.run(data_dir).await,
        Command::Deposit(args) => args.run(data_dir).await,
        Command::Withdraw(args) => args.run(data_dir).await,
        Command::Ipfs { command } => command.run().await,
        Command::Module { command } => command.run(data_dir).await,
        Command::Gateway(args) => args.run(data_dir).await,
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("Error: {}", error_text(&e));
            exit::INFRA
        }
    }
}

/// An error and its causes, each cause left out when the text before already says it (errors
/// that print their source themselves would otherwise say it twice).
pub fn error_text(e: &eyre::Report) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !out.contains(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    out
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod cli_tests {
    /// clap's own consistency checks over every subcommand (duplicate argument names, e.g. a
    /// flattened NetworkArgs flag that a subcommand also declares, only fail at run time).
    #[test]
    fn a_cause_the_error_already_says_is_not_said_twice() {
        let says = eyre::eyre!("inner problem").wrap_err("spec.json: inner problem");
        assert_eq!(super::error_text(&says), "spec.json: inner problem");
        let hides = eyre::eyre!("inner problem").wrap_err("spec.json is bad");
        assert_eq!(super::error_text(&hides), "spec.json is bad: inner problem");
    }

    #[test]
    fn the_command_line_is_well_formed() {
        super::command().debug_assert();
    }
}
