//! Putting a module's content on IPFS for `lilypad module publish`: its folder and (unless
//! asked not to) its image archive, imported into a Kubo node as CARs.

use alloy::primitives::B256;
use eyre::WrapErr;
use lilypad_module::Module;

/// Builds the image (unless `!with_image`), saves its archive, and imports the module folder
/// and the archive into the IPFS node at `api` as CARs. Returns the image hash to pin (zero
/// without an image).
pub async fn publish_content(module: &Module, api: Option<&str>, with_image: bool) -> eyre::Result<B256> {
    let Some(api) = api else {
        return Err(eyre::eyre!(
            "no IPFS node to publish {} to: pass --ipfs-api <Kubo RPC URL> (or set ipfs_api in the config file)",
            module.reference()
        ));
    };
    let kubo = lilypad_store::KuboClient::new(api)?;
    let work = tempfile::tempdir().wrap_err("temporary folder")?;
    let store = lilypad_store::DiskBlockstore::open(work.path().join("blocks"))?;
    let mut roots = vec![];
    let (dir, s) = (module.dir().to_path_buf(), store.clone());
    let folder = tokio::task::spawn_blocking(move || lilypad_store::add_path(&dir, &s)).await??;
    roots.push(("module folder", folder));
    let mut image_hash = B256::ZERO;
    if with_image {
        let executor = lilypad_executor::Executor::connect().await?;
        executor.preflight().await?;
        let tag = lilypad_module::build_image(module, &executor).await?;
        println!("{} built as image {tag}", module.reference());
        let archive = lilypad_module::save_image_archive(module, &executor, &work.path().join("image.tar"), &store).await?;
        println!("image archive {} ({} bytes)", archive.cid, archive.bytes);
        roots.push(("image archive", archive.cid));
        image_hash = archive.image_hash;
    }
    for (what, root) in roots {
        import_root(&kubo, api, &store, work.path(), root, what).await?;
        println!("{what} {root} is on {api}");
    }
    Ok(image_hash)
}

/// Exports the DAG `root` from `store` as a CAR (in `work`) and imports it into the IPFS node
/// `kubo` (at `api`), checking the node took `root`.
pub async fn import_root(
    kubo: &lilypad_store::KuboClient,
    api: &str,
    store: &lilypad_store::DiskBlockstore,
    work: &std::path::Path,
    root: lilypad_store::Cid,
    what: &str,
) -> eyre::Result<()> {
    let car = work.join(format!("{root}.car"));
    let (s, c) = (store.clone(), car.clone());
    tokio::task::spawn_blocking(move || -> eyre::Result<u64> { Ok(lilypad_store::export_car(&s, &root, std::fs::File::create(&c)?)?) }).await??;
    let imported = kubo.dag_import(&car).await.wrap_err_with(|| format!("importing the {what} into {api}"))?;
    if !imported.contains(&root) {
        return Err(eyre::eyre!("{api} imported {imported:?}, not the {what} {root}"));
    }
    Ok(())
}
