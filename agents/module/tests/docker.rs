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
    build_image, build_image_with, init_module, BuildError, BuildOptions, Module,
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
