//! The same work on both engines: a module's run on the Docker executor against its
//! WebAssembly twin on the WebAssembly engine, cold and warm, engine only (no chain, no
//! network). Prints a Markdown table for BENCHMARKS.md.
//!
//!     cargo run --release -p lilypad-module --example engine_latency [RUNS]
//!
//! Cases: `lilysay` / `lilysay-wasm` with `Message=hi` (start-up dominates) and `hashchain` /
//! `hashchain-wasm` with `Rounds=1000000` (one million SHA-256 blocks: compute dominates).
//! WebAssembly cold: a new engine with an empty cache (compiling included); after a restart: a
//! new engine whose disk cache holds the compiled module; warm: the same engine again. Docker:
//! the image is built first (not timed); every run creates and removes its containers, so the
//! first run is the cold one. Needs a Docker engine (tools/bootstrap --docker).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lilypad_executor::Executor;
use lilypad_module::{build_image, Module};
use lilypad_wasm::WasmEngine;

fn modules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../modules")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

struct Row {
    work: &'static str,
    docker_cold: Duration,
    docker_warm: Duration,
    wasm_cold: Duration,
    wasm_restart: Duration,
    wasm_warm: Duration,
}

async fn case(
    exec: &Executor,
    tmp: &Path,
    work: &'static str,
    docker: &str,
    wasm: &str,
    inputs: &[&str],
    runs: usize,
) -> Result<Row, Box<dyn std::error::Error>> {
    let dm = Module::load(modules().join(docker))?;
    let wm = Module::load(modules().join(wasm))?;
    let image = build_image(&dm, exec).await?;
    let spec = dm.to_run_spec(&dm.parse_inputs(inputs)?, &image, None)?;
    let mut n = 0;
    let mut dir = |kind: &str| {
        n += 1;
        tmp.join(format!("{wasm}-{kind}-{n}"))
    };
    let mut docker_runs = Vec::new();
    for _ in 0..=runs {
        let t = Instant::now();
        let out = exec.run("bench", &spec, &dir("docker")).await?;
        docker_runs.push(t.elapsed());
        assert!(out.succeeded(), "{docker} failed: {out:?}");
    }
    let docker_cold = docker_runs.remove(0);

    let wspec = wm
        .wasm_spec(&wm.render(&wm.parse_inputs(inputs)?)?, None)
        .expect("a WebAssembly module");
    let cache = tmp.join(format!("cache-{wasm}"));
    let mut cold = Vec::new();
    let mut restart = Vec::new();
    for i in 0..runs {
        // an empty cache each time
        let fresh = tmp.join(format!("cache-{wasm}-{i}"));
        let engine = WasmEngine::new(Some(fresh))?;
        let t = Instant::now();
        let out = engine.run("bench", &wspec, &dir("wasm")).await?;
        cold.push(t.elapsed());
        assert!(out.succeeded() && out.compiled, "{wasm}: {out:?}");
    }
    WasmEngine::new(Some(cache.clone()))?.prepare("bench", &wspec.wasm).await?;
    for _ in 0..runs {
        let engine = WasmEngine::new(Some(cache.clone()))?;
        let t = Instant::now();
        let out = engine.run("bench", &wspec, &dir("wasm")).await?;
        restart.push(t.elapsed());
        assert!(out.succeeded() && !out.compiled, "{wasm}: {out:?}");
    }
    let engine = WasmEngine::new(Some(cache))?;
    engine.prepare("bench", &wspec.wasm).await?;
    let mut warm = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let out = engine.run("bench", &wspec, &dir("wasm")).await?;
        warm.push(t.elapsed());
        assert!(out.succeeded() && !out.compiled, "{wasm}: {out:?}");
    }
    // same work, same answer
    let d = std::fs::read(tmp.join(format!("{wasm}-docker-1/stdout")))?;
    let w = std::fs::read(tmp.join(format!("{wasm}-wasm-{}/stdout", runs + 2)))?;
    assert_eq!(d, w, "{docker} and {wasm} print the same bytes");
    Ok(Row {
        work,
        docker_cold,
        docker_warm: median(docker_runs),
        wasm_cold: median(cold),
        wasm_restart: median(restart),
        wasm_warm: median(warm),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let exec = Executor::connect().await?;
    exec.preflight().await?;
    let tmp = tempfile::tempdir()?;
    let rows = vec![
        case(&exec, tmp.path(), "lilysay `Message=hi`", "lilysay", "lilysay-wasm", &["Message=hi"], runs).await?,
        case(
            &exec,
            tmp.path(),
            "hashchain `Rounds=1000000`",
            "hashchain",
            "hashchain-wasm",
            &["Rounds=1000000"],
            runs,
        )
        .await?,
    ];
    println!("| work | Docker, first run | Docker, warm | WASM, cold (compile + run) | WASM, after restart (disk cache) | WASM, warm |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.work,
            ms(r.docker_cold),
            ms(r.docker_warm),
            ms(r.wasm_cold),
            ms(r.wasm_restart),
            ms(r.wasm_warm)
        );
    }
    println!("\n(medians of {runs} runs; Docker warm: runs 2..{})", runs + 1);
    // the outputs volumes and holder containers the executor prepared ahead are not left behind
    exec.release().await;
    Ok(())
}
