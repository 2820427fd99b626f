//! `lilypad module`: create, build and publish job modules.

use std::path::{Path, PathBuf};

use crate::network::NetworkArgs;

#[derive(clap::Subcommand, Debug)]
pub enum ModuleCommand {
    /// Create a working module skeleton in a new folder.
    Init {
        dir: PathBuf,
        /// The module's name (default: the folder's name).
        #[arg(long)]
        name: Option<String>,
        /// A WebAssembly module (`"engine": "wasm"`): C source, its build script and the
        /// `.wasm` already built from it, instead of a Dockerfile.
        #[arg(long)]
        wasm: bool,
    },
    /// Build a module's image (a WebAssembly module: check that its `.wasm` compiles on the
    /// providers' engine) and print its content hash.
    Build { dir: PathBuf },
    /// Publish a module: build its image, put the folder and the image archive on IPFS, and
    /// register name:version on chain pinned to both content hashes (a WebAssembly module:
    /// the folder, holding its `.wasm`, and no image).
    Publish {
        dir: PathBuf,
        #[command(flatten)]
        network: NetworkArgs,
        /// Kubo RPC API to import the folder and image archive into (default: the config
        /// file's ipfs_api, else the devnet's IPFS node).
        #[arg(long, env = "LILYPAD_IPFS_API")]
        ipfs_api: Option<String>,
        /// Pin no image archive: providers then need the folder and build the image themselves.
        #[arg(long)]
        no_image: bool,
    },
}

impl ModuleCommand {
    pub async fn run(self, data_dir: &Path) -> eyre::Result<()> {
        match self {
            ModuleCommand::Init { dir, name, wasm } => {
                let name = match name {
                    Some(n) => n,
                    None => dir
                        .file_name()
                        .and_then(|n| n.to_str())
                        .map(str::to_string)
                        .ok_or_else(|| eyre::eyre!("give the module a --name"))?,
                };
                let module = match wasm {
                    true => lilypad_module::init_wasm_module(&dir, &name)?,
                    false => lilypad_module::init_module(&dir, &name)?,
                };
                println!("created {} in {} (content hash {})", module.reference(), dir.display(), module.cid());
                if wasm {
                    println!(
                        "a WebAssembly module: {} is built from {} by {} (clang, lld, wasi-libc); run it again after changing the source",
                        lilypad_module::SKELETON_WASM,
                        lilypad_module::SKELETON_SOURCE,
                        lilypad_module::SKELETON_BUILD_SCRIPT
                    );
                }
                println!("build it with: lilypad module build {}", dir.display());
            }
            ModuleCommand::Build { dir } => {
                let module = lilypad_module::Module::load(&dir)?;
                if module.engine() == lilypad_module::EngineKind::Wasm {
                    check_wasm(&module).await?;
                    println!("content hash (CID): {}", module.cid());
                    println!("spec hash (on chain): {}", module.spec_hash());
                    return Ok(());
                }
                let executor = lilypad_executor::Executor::connect().await?;
                executor.preflight().await?;
                let image = lilypad_module::build_image(&module, &executor).await?;
                println!("{} built as image {image}", module.reference());
                println!("content hash (CID): {}", module.cid());
                println!("spec hash (on chain): {}", module.spec_hash());
            }
            ModuleCommand::Publish { dir, network, ipfs_api, no_image } => {
                let module = lilypad_module::Module::load(&dir)?;
                let net = network.resolve_with(data_dir, |d| d.job_creator_key.clone())?;
                let api = ipfs_api.or(net.ipfs_api.clone());
                let client = net.connect(true).await?;
                // a published version is final: say so before building and uploading anything
                let id = lilypad_module::module_id(module.name(), module.version());
                if client.published_module(id).await?.is_some() {
                    return Err(eyre::eyre!(
                        "{} is published already, and a published version never changes: bump the version in {} (e.g. to the next patch) and publish again",
                        module.reference(),
                        dir.join(lilypad_module::SPEC_FILE).display()
                    ));
                }
                check_name_owner(&client, module.name()).await?;
                let wasm = module.engine() == lilypad_module::EngineKind::Wasm;
                if wasm {
                    check_wasm(&module).await?;
                }
                // a WebAssembly module has no image: its .wasm is in the folder, pinned by its hash
                let image_hash = crate::publish::publish_content(&module, api.as_deref(), !no_image && !wasm).await?;
                let market = client.market();
                let call = market.publishModule(module.name().to_string(), module.version().to_string(), module.chain_spec_with_image(image_hash));
                client.send(&format!("publishModule({})", module.reference()), call).await.map_err(|e| match e.market_error() {
                    Some("ModuleNameReserved") => eyre::eyre!("{}", reserved_name(module.name(), client.address().ok())),
                    Some(_) => eyre::eyre!("the module directory refused {}: {e}", module.reference()),
                    None => eyre::eyre!(e),
                })?;
                println!("published {} pinned to {} (spec hash {})", module.reference(), module.cid(), module.spec_hash());
                if image_hash != alloy::primitives::B256::ZERO {
                    println!("image archive: {} (image hash {image_hash})", lilypad_module::cid_from_spec_hash(image_hash));
                }
                println!("run it with: {}", run_hint(&module));
                println!("(what it writes to /outputs comes back in <data-dir>/downloaded-files/<job id>/outputs/)");
            }
        }
        Ok(())
    }
}

/// Compiles a WebAssembly module's `.wasm` as providers will (wasmtime, their configuration):
/// what `build` means for it, and what publishing checks first.
async fn check_wasm(module: &lilypad_module::Module) -> eyre::Result<()> {
    let file = module.wasm_file().ok_or_else(|| eyre::eyre!("module {} names no .wasm file", module.reference()))?;
    let engine = lilypad_wasm::WasmEngine::new(None).map_err(|e| eyre::eyre!("starting wasmtime: {e:#}"))?;
    engine.prepare(&module.reference().to_string(), &file).await.map_err(|e| eyre::eyre!("module {}: {e}", module.reference()))?;
    println!("{} is a WebAssembly module: {} compiles for the providers' engine (no image to build)", module.reference(), file.display());
    Ok(())
}

/// Says, before anything is built or uploaded, when this account may not publish versions of
/// `name`: a repository path (`github.com/org/repo`) that the market's owner has not assigned
/// to it, or a name another account owns.
async fn check_name_owner(client: &lilypad_chain::ChainClient, name: &str) -> eyre::Result<()> {
    let me = client.address()?;
    let market = client.market();
    let hash = alloy::primitives::keccak256(name.as_bytes());
    let owner = client.read(&format!("reading the owner of module name {name}"), || async { market.moduleNameOwner(hash).call().await }).await?;
    if owner == me {
        return Ok(());
    }
    if owner == alloy::primitives::Address::ZERO {
        if name.contains('/') {
            return Err(eyre::eyre!("{}", reserved_name(name, Some(me))));
        }
        return Ok(()); // a plain name: the first to publish it owns it
    }
    Err(eyre::eyre!(
        "the module name {name} belongs to {owner}: only it publishes versions of it (it can hand the name over with transferModuleName); choose another name for your module"
    ))
}

/// Why a repository-path name cannot be published by `me` yet, and what to do.
fn reserved_name(name: &str, me: Option<alloy::primitives::Address>) -> String {
    let me = me.map(|a| a.to_string()).unwrap_or_else(|| "<your address>".into());
    format!(
        "{name} is a repository path: only the account the market's owner assigned it to may publish it (so nobody can squat another author's repository). \
         Show the market's owner that you control {name}, and ask it to run assignModuleName(\"{name}\", {me}); then publish again. \
         Or publish under a plain name (no '/')."
    )
}

/// `lilypad run name:version` with a value for each input it requires.
fn run_hint(module: &lilypad_module::Module) -> String {
    let mut hint = format!("lilypad run {}", module.reference());
    for d in module.inputs().iter().filter(|d| d.default.is_none()) {
        // a file or folder input: a local path, which `lilypad run` puts on IPFS
        let value = if d.ty == lilypad_module::InputType::Cid { "@<file or folder>".to_string() } else { d.sample() };
        let value = if value.is_empty() || value.contains(|c: char| !c.is_ascii_alphanumeric() && !"._-".contains(c)) { format!("'{value}'") } else { value };
        hint.push_str(&format!(" -i {}={value}", d.name));
    }
    hint
}
