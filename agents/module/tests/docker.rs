//! Building and running modules on a real Docker engine (start one with `tools/docker-engine`).
//!
//! Without an engine these tests are skipped with a loud message, unless
//! `LILYPAD_REQUIRE_DOCKER` is set (CI sets it): then a missing engine fails them. They need a
//! C compiler with a static libc on the host (`cc -static`), which the modules' build commands
//! run.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::query_parameters::RemoveImageOptionsBuilder;
use lilypad_executor::{Executor, ExecutorConfig, RunOutcome};
use lilypad_module::{
    build_image, build_image_with, init_module, inspect_archive, load_image_archive, BuildError,
    BuildOptions, ImageError, Module, ModuleImage,
};

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("lilypad_module=info,lilypad_executor=info")
            }),
        )
        .with_test_writer()
        .try_init();
}

/// An executor, or `None` (test skipped) when no engine answers and `LILYPAD_REQUIRE_DOCKER`
/// is unset.
async fn engine(test: &str) -> Option<Executor> {
    init_tracing();
    let config = ExecutorConfig {
        instance: format!("test-module-{test}-{}", std::process::id()),
        ..Default::default()
    };
    let required = std::env::var_os("LILYPAD_REQUIRE_DOCKER").is_some();
    let exec = match Executor::connect_with(config).await {
        Ok(e) => e,
        Err(e) if !required => {
            skip(test, &e);
            return None;
        }
        Err(e) => panic!("LILYPAD_REQUIRE_DOCKER is set but no Docker engine answers: {e}"),
    };
    let cc = std::process::Command::new("cc").arg("--version").output();
    assert!(
        cc.is_ok_and(|o| o.status.success()),
        "the module builds run `cc -static` on this host: install a C compiler and a static libc \
         (Debian: apt-get install gcc libc6-dev)"
    );
    match exec.preflight().await {
        Ok(_) => Some(exec),
        Err(e) if !required && e.is_retryable() => {
            skip(test, &e);
            None
        }
        Err(e) => panic!("preflight failed: {e}"),
    }
}

fn skip(test: &str, e: &dyn std::fmt::Display) {
    // Written to the real stderr, not through eprintln!, which the test harness captures and
    // hides for passing tests.
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!! SKIPPING the Docker engine tests of lilypad-module: {e}\n\
             !!!!!!!! Run tools/docker-engine (as root) first, or set LILYPAD_REQUIRE_DOCKER=1 \
             to make a missing engine a failure.\n"
        );
    });
    eprintln!("SKIPPED {test}: no Docker engine");
}

fn lilysay_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../modules/lilysay")
}

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

fn read(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    String::from_utf8(fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// Runs `module` with `inputs` from `image`; returns the outcome and the result folder.
async fn run(
    exec: &Executor,
    module: &Module,
    image: &str,
    inputs: &[&str],
) -> (RunOutcome, PathBuf, tempfile::TempDir) {
    let inputs = module.parse_inputs(inputs).unwrap();
    let spec = module.to_run_spec(&inputs, image, None).unwrap();
    let holder = tempfile::tempdir().unwrap();
    let result = holder.path().join("result");
    let job = format!("module-test-{}", unique());
    let outcome = exec.run(&job, &spec, &result).await.unwrap();
    (outcome, result, holder)
}

async fn remove_image(exec: &Executor, tag: &str) {
    let opts = RemoveImageOptionsBuilder::default().force(true).build();
    let _ = exec.docker().remove_image(tag, Some(opts), None).await;
}

#[tokio::test]
async fn lilysay_builds_and_runs() {
    let Some(exec) = engine("lilysay").await else {
        return;
    };
    let module = Module::load(lilysay_dir()).unwrap();
    let image = build_image(&module, &exec).await.unwrap();
    assert_eq!(image, module.image_tag());

    let (outcome, result, _hold) = run(&exec, &module, &image, &["Message=hello"]).await;
    let stdout = read(result.join("stdout"));
    assert!(
        outcome.succeeded(),
        "{outcome:?}\nstderr: {}",
        read(result.join("stderr"))
    );
    assert_eq!(outcome.exit_code, 0);
    assert!(
        stdout.contains(" _______\n< hello >\n -------\n"),
        "{stdout}"
    );
    assert!(stdout.contains("@..@"), "{stdout}");
    assert_eq!(read(result.join("outputs/lilysay.txt")), stdout);
    assert_eq!(read(result.join("exitCode")).trim(), "0");

    // The default input, and a shell injection attempt that stays one literal argument.
    let (_, result, _hold) = run(&exec, &module, &image, &[]).await;
    assert!(read(result.join("stdout")).contains("< Hello, Lilypad! >"));
    let evil = "'; rm -rf / # $(id) \"]}";
    let (outcome, result, _hold) = run(&exec, &module, &image, &[&format!("Message={evil}")]).await;
    assert!(outcome.succeeded());
    assert!(read(result.join("stdout")).contains(&format!("< {evil} >")));

    // Deterministic: the same input gives the same bytes.
    let (_, a, _h1) = run(&exec, &module, &image, &["Message=same"]).await;
    let (_, b, _h2) = run(&exec, &module, &image, &["Message=same"]).await;
    assert_eq!(
        read(a.join("outputs/lilysay.txt")),
        read(b.join("outputs/lilysay.txt"))
    );

    // The module folder was not touched by the build: no binary, same hash.
    assert!(!lilysay_dir().join("lilysay").exists());
    assert_eq!(Module::load(lilysay_dir()).unwrap().cid(), module.cid());
    // the outputs volumes and holders prepared ahead, and the runs' containers, are not left
    exec.release().await;
    assert_eq!(exec.list_own_containers().await.unwrap(), Vec::<String>::new(), "left in the engine");
}

#[tokio::test]
async fn building_twice_reuses_the_image() {
    let Some(exec) = engine("reuse").await else {
        return;
    };
    let module = Module::load(lilysay_dir()).unwrap();
    let first = build_image_with(&module, &exec, &BuildOptions::default())
        .await
        .unwrap();
    let second = build_image_with(&module, &exec, &BuildOptions::default())
        .await
        .unwrap();
    assert!(second.reused, "{second:?}");
    assert_eq!(first.tag, second.tag);
    assert!(exec.has_image(&second.tag).await.unwrap());
}

#[tokio::test]
async fn an_initialized_module_builds_and_runs() {
    let Some(exec) = engine("init").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A unique name: a fresh tag, so the build really runs.
    let name = format!("test/init-{}", unique());
    let module = init_module(dir.path().join("m"), &name).unwrap();
    let built = build_image_with(&module, &exec, &BuildOptions::default())
        .await
        .unwrap();
    assert!(!built.reused);
    assert!(built.tag.starts_with("lilypad/test/init-"), "{}", built.tag);
    // The build ran in a copy.
    assert!(!module.dir().join("app").exists());

    let (outcome, result, _hold) = run(&exec, &module, &built.tag, &["Input=Lilypad"]).await;
    assert!(
        outcome.succeeded(),
        "{outcome:?}\nstderr: {}",
        read(result.join("stderr"))
    );
    assert_eq!(read(result.join("stdout")), "Hello, Lilypad!\n");
    assert_eq!(read(result.join("outputs/result.txt")), "Hello, Lilypad!\n");
    let (_, result, _hold) = run(&exec, &module, &built.tag, &[]).await;
    assert_eq!(read(result.join("stdout")), "Hello, world!\n");
    remove_image(&exec, &built.tag).await;
    exec.release().await;
    assert_eq!(exec.list_own_containers().await.unwrap(), Vec::<String>::new(), "left in the engine");
}

#[tokio::test]
async fn failing_build_commands_are_reported() {
    let Some(exec) = engine("failing").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let name = format!("test/broken-{}", unique());
    let path = dir.path().join("m");
    init_module(&path, &name).unwrap();
    fs::write(path.join("main.c"), "int main(void) { this is not C }\n").unwrap();
    let module = Module::load(&path).unwrap();
    match build_image(&module, &exec).await {
        Err(e @ BuildError::CommandFailed { .. }) => {
            let text = e.to_string();
            assert!(text.contains("\"cc\""), "{text}");
            assert!(text.contains("main.c"), "{text}");
            assert!(text.contains("error"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!exec.has_image(&module.image_tag()).await.unwrap());

    // A folder edited after loading is refused rather than built.
    fs::write(path.join("main.c"), "int main(void) { return 0; }\n").unwrap();
    match build_image(&module, &exec).await {
        Err(BuildError::ModuleChanged { .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// Builds a `FROM scratch` image holding one file `/f` with `content`, tagged `tag`; returns its id.
async fn tiny_image(exec: &Executor, tag: &str, content: &str) -> String {
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY f /f\n").unwrap();
    fs::write(ctx.path().join("f"), content).unwrap();
    exec.build_image(ctx.path(), tag).await.unwrap()
}

/// `archive` rewritten as an attacker would: every entry but `manifest.json`, then a harmless
/// `manifest.json` naming `visible`, then `x/../manifest.json` naming `hidden` (the engine
/// cleans the path and keeps the last copy).
fn with_hidden_manifest(archive: &Path, visible: &str, hidden: &str) -> tempfile::NamedTempFile {
    use std::io::Read;
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut b = tar::Builder::new(out.reopen().unwrap());
    let mut manifest: Option<serde_json::Value> = None;
    let mut a = tar::Archive::new(fs::File::open(archive).unwrap());
    for entry in a.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if entry.path().unwrap().to_str() == Some("manifest.json") {
            manifest = Some(serde_json::from_slice(&data).unwrap());
            continue;
        }
        let header = entry.header().clone();
        b.append(&header, &data[..]).unwrap();
    }
    let manifest = manifest.expect("docker save wrote a manifest.json");
    for (name, tag) in [("manifest.json", visible), ("x/../manifest.json", hidden)] {
        let mut m = manifest.clone();
        m[0]["RepoTags"] = serde_json::json!([tag]);
        let data = serde_json::to_vec(&m).unwrap();
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.finish().unwrap();
    out
}

#[tokio::test]
async fn an_archive_cannot_retag_another_image_and_its_names_are_never_applied() {
    let Some(exec) = engine("archive").await else {
        return;
    };
    let u = unique();
    let victim_tag = format!("lilypad-test/victim-{u}:1");
    let attacker_tag = format!("lilypad-test/attacker-{u}:1");
    let victim = tiny_image(&exec, &victim_tag, &format!("victim {u}")).await;
    let attacker = tiny_image(&exec, &attacker_tag, &format!("attacker {u}")).await;
    assert_ne!(victim, attacker);
    let dir = tempfile::tempdir().unwrap();
    let module = init_module(dir.path().join("m"), &format!("test/archive-{u}")).unwrap();
    let saved = dir.path().join("attacker.tar");
    exec.save_image(&attacker, &saved).await.unwrap();
    let crafted = with_hidden_manifest(&saved, &module.image_tag(), &victim_tag);

    // Refused before the engine sees it: the victim keeps its image, the module gets no tag.
    let e = load_image_archive(&module, &exec, crafted.path()).await.unwrap_err();
    assert!(matches!(e, ImageError::Refused { .. }), "{e:?}");
    assert!(e.to_string().contains("x/../manifest.json"), "{e}");
    assert_eq!(exec.image_id_of(&victim_tag).await.unwrap(), victim);
    assert!(!exec.has_image(&module.image_tag()).await.unwrap());

    // The archive is a real attack: handed to the engine as it is, it re-tags the victim.
    let file = tokio::fs::File::open(crafted.path()).await.unwrap();
    exec.load_image(file).await.unwrap();
    assert_eq!(exec.image_id_of(&victim_tag).await.unwrap(), attacker, "the engine applied the hidden manifest");
    exec.tag_image(&victim, &victim_tag).await.unwrap();

    // A plain archive naming another image (saved by its tag) loads under the module's tag
    // only, by the id computed from its config.
    let foreign = dir.path().join("foreign.tar");
    exec.save_image(&attacker_tag, &foreign).await.unwrap();
    assert_eq!(inspect_archive(&foreign).unwrap().tags, vec![attacker_tag.clone()]);
    remove_image(&exec, &attacker_tag).await;
    remove_image(&exec, &attacker).await;
    let image = load_image_archive(&module, &exec, &foreign).await.unwrap();
    assert_eq!(image, ModuleImage { tag: module.image_tag(), id: attacker.clone() });
    assert!(!exec.has_image(&attacker_tag).await.unwrap(), "the archive's own name was not applied");
    assert_eq!(exec.image_id_of(&victim_tag).await.unwrap(), victim);
    image.verify(&module, &exec).await.unwrap();

    // Before each run: a tag moved to another image is caught.
    exec.tag_image(&victim, &module.image_tag()).await.unwrap();
    let e = image.verify(&module, &exec).await.unwrap_err();
    assert!(matches!(e, ImageError::Changed { .. }), "{e:?}");
    assert!(e.to_string().contains("prepare the image again"), "{e}");

    for r in [&module.image_tag(), &victim_tag, &attacker, &victim] {
        remove_image(&exec, r).await;
    }
}

#[tokio::test]
async fn a_sparse_layer_bomb_is_refused_before_the_engine_loads_it() {
    let Some(exec) = engine("sparse").await else {
        return;
    };
    let u = unique();
    let dir = tempfile::tempdir().unwrap();
    let module = init_module(dir.path().join("m"), &format!("test/sparse-{u}")).unwrap();
    // A layer holding a GNU sparse file declaring 2 GiB, one block stored.
    let mut layer = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..4].copy_from_slice(b"huge");
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_size(512);
    h.set_mode(0o644);
    {
        let gnu = h.as_gnu_mut().unwrap();
        let octal = |f: &mut [u8; 12], v: u64| f.copy_from_slice(format!("{v:011o}\0").as_bytes());
        octal(&mut gnu.realsize, 2 << 30);
        octal(&mut gnu.sparse[0].offset, (2 << 30) - 512);
        octal(&mut gnu.sparse[0].numbytes, 512);
    }
    h.set_cksum();
    layer.append(&h, &[1u8; 512][..]).unwrap();
    let layer = layer.into_inner().unwrap();
    let sha = |d: &[u8]| {
        use sha2::Digest;
        alloy::hex::encode(sha2::Sha256::digest(d))
    };
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{}", sha(&layer))] }
    }))
    .unwrap();
    let id = format!("sha256:{}", sha(&config));
    let manifest = serde_json::to_vec(&serde_json::json!([{ "Config": "c.json", "RepoTags": null, "Layers": ["l/layer.tar"] }])).unwrap();
    let archive = dir.path().join("bomb.tar");
    let mut b = tar::Builder::new(fs::File::create(&archive).unwrap());
    for (name, data) in [("c.json", &config[..]), ("l/layer.tar", &layer[..]), ("manifest.json", &manifest[..])] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    }
    b.finish().unwrap();
    assert!(fs::metadata(&archive).unwrap().len() < 20_000);
    let e = load_image_archive(&module, &exec, &archive).await.unwrap_err();
    assert!(e.to_string().contains("sparse file"), "{e}");
    assert!(!exec.has_image(&id).await.unwrap(), "nothing was loaded");
}
