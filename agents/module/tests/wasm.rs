//! WebAssembly modules (`"engine": "wasm"`): the spec rules, the folder checks, the run spec,
//! and the example modules run by the WebAssembly engine (no Docker needed).

use std::fs;
use std::path::{Path, PathBuf};

use lilypad_module::{EngineKind, LoadError, Module, SpecError};
use lilypad_wasm::{Ending, WasmEngine};
use serde_json::{json, Value};

fn modules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../modules")
}

/// A minimal valid WebAssembly module: the 8-byte header.
const EMPTY_WASM: &[u8] = b"\0asm\x01\0\0\0";

fn base() -> Value {
    json!({
        "name": "w",
        "version": "0.1.0",
        "engine": "wasm",
        "wasm": { "file": "app.wasm" },
        "entrypoint": ["app"],
        "args": ["{{Message}}"],
        "env": { "GREETING": "say {{Message}}" },
        "inputs": { "Message": { "type": "string", "default": "hi" } },
        "resources": { "cpuMilli": 500, "ramMb": 16, "gpus": 0, "vramMb": 0 },
        "timeoutSeconds": 30,
        "deterministic": true,
        "defaultPayment": "1"
    })
}

fn with(f: impl FnOnce(&mut Value)) -> Value {
    let mut v = base();
    f(&mut v);
    v
}

/// A folder with `spec` and the given files.
fn folder(spec: &Value, files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("lilypad-module.json"), serde_json::to_vec_pretty(spec).unwrap()).unwrap();
    for (name, bytes) in files {
        let p = d.path().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
    d
}

fn load(spec: &Value) -> Result<Module, LoadError> {
    let d = folder(spec, &[("app.wasm", EMPTY_WASM)]);
    Module::load(d.path())
}

fn spec_error(spec: &Value) -> SpecError {
    match load(spec) {
        Err(LoadError::Spec { source, .. }) => source,
        other => panic!("expected a spec error for {spec}, got {other:?}"),
    }
}

#[test]
fn a_wasm_module_loads_without_a_dockerfile_and_renders_like_a_docker_one() {
    let d = folder(&base(), &[("app.wasm", EMPTY_WASM)]);
    let m = Module::load(d.path()).unwrap();
    assert_eq!(m.engine(), EngineKind::Wasm);
    let run = m.render(&m.parse_inputs(&["Message=two words"]).unwrap()).unwrap();
    let spec = m.wasm_spec(&run, None).unwrap();
    assert_eq!(spec.wasm, d.path().join("app.wasm"));
    assert_eq!(spec.argv, ["app", "two words"], "one argument per args element, as for Docker");
    assert_eq!(spec.env, [("GREETING".to_string(), "say two words".to_string())]);
    assert_eq!(spec.limits.memory_bytes, 16 << 20, "linear memory from resources.ramMb");
    assert_eq!(spec.limits.wall_time.as_secs(), 30);
    assert_eq!(spec.limits.fuel, 30 * lilypad_wasm::FUEL_PER_SECOND);
    assert_eq!(spec.limits.log_bytes, m.limits().log_bytes, "the caps of a Docker run");
    assert_eq!(spec.limits.outputs_bytes, m.limits().outputs_bytes);
    assert!(spec.determinism.fixed_clock);
    // the seed depends on the job's inputs, and is the same for the same inputs
    let seed = spec.determinism.random_seed.unwrap();
    let again = m.wasm_spec(&m.render(&m.parse_inputs(&["Message=two words"]).unwrap()).unwrap(), None).unwrap();
    assert_eq!(again.determinism.random_seed, Some(seed));
    let other = m.wasm_spec(&m.render(&m.parse_inputs(&["Message=other"]).unwrap()).unwrap(), None).unwrap();
    assert_ne!(other.determinism.random_seed, Some(seed));
    assert_eq!(m.flags(), lilypad_module::MODULE_WASM, "published with the WebAssembly flag");
    // the spec round-trips with its engine fields
    let text = serde_json::to_value(m.spec()).unwrap();
    assert_eq!(text["engine"], "wasm");
    assert_eq!(text["wasm"], json!({ "file": "app.wasm" }));
}

#[test]
fn a_docker_module_has_no_wasm_spec_and_does_not_write_an_engine_field() {
    let m = Module::load(modules_dir().join("lilysay")).unwrap();
    assert_eq!(m.engine(), EngineKind::Docker);
    assert!(m.wasm_file().is_none());
    assert!(m.wasm_spec(&m.render(&Default::default()).unwrap(), None).is_none());
    let text = serde_json::to_value(m.spec()).unwrap();
    assert!(text.get("engine").is_none() && text.get("wasm").is_none(), "{text}");
}

#[test]
fn a_spec_naming_a_missing_wasm_file_is_refused() {
    let d = folder(&base(), &[]);
    let e = Module::load(d.path()).unwrap_err();
    assert!(matches!(e, LoadError::NoWasmFile { .. }), "{e:?}");
    assert!(e.to_string().contains("\"app.wasm\"") && e.to_string().contains("no such file"), "{e}");
    // a folder of that name is not the file either
    let d = folder(&base(), &[("app.wasm/x", b"")]);
    assert!(matches!(Module::load(d.path()), Err(LoadError::NoWasmFile { .. })));
}

#[test]
fn a_wasm_file_that_is_not_webassembly_is_refused_at_load() {
    let d = folder(&base(), &[("app.wasm", b"#!/bin/sh\n")]);
    let e = Module::load(d.path()).unwrap_err();
    assert!(matches!(e, LoadError::NotWasm { .. }), "{e:?}");
    assert!(e.to_string().contains("magic bytes"), "{e}");
}

#[test]
fn docker_only_fields_are_refused_on_a_wasm_module() {
    let cases: Vec<(Value, &str)> = vec![
        (with(|v| v["build"] = json!({ "commands": [["make"]] })), "build.commands"),
        (with(|v| v["workdir"] = json!("/work")), "workdir"),
        (with(|v| v["network"] = json!(true)), "network"),
        (with(|v| v["resources"]["gpus"] = json!(1)), "resources.gpus"),
    ];
    for (spec, field) in cases {
        match spec_error(&spec) {
            SpecError::DockerOnlyField { field: f, .. } => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    // a Dockerfile would never be used
    let d = folder(&base(), &[("app.wasm", EMPTY_WASM), ("Dockerfile", b"FROM scratch\n")]);
    let e = Module::load(d.path()).unwrap_err();
    assert!(matches!(e, LoadError::DockerfileInWasmModule { .. }), "{e:?}");
}

#[test]
fn the_engine_and_the_wasm_section_go_together() {
    let e = spec_error(&with(|v| {
        v.as_object_mut().unwrap().remove("wasm");
    }));
    assert!(e.to_string().contains("needs a `wasm` section"), "{e}");
    let e = spec_error(&with(|v| {
        v.as_object_mut().unwrap().remove("engine");
    }));
    assert!(e.to_string().contains("no \"engine\": \"wasm\""), "{e}");
    // an unknown engine is a JSON error naming the known ones
    let e = load(&with(|v| v["engine"] = json!("podman"))).unwrap_err().to_string();
    assert!(e.contains("docker") && e.contains("wasm"), "{e}");
    // an unknown field of the section too
    let e = load(&with(|v| v["wasm"]["threads"] = json!(true))).unwrap_err().to_string();
    assert!(e.contains("threads"), "{e}");
}

#[test]
fn wasm_file_paths_stay_inside_the_folder() {
    for bad in ["../app.wasm", "/tmp/app.wasm", "app", ""] {
        let e = spec_error(&with(|v| v["wasm"]["file"] = json!(bad)));
        assert!(matches!(e, SpecError::InvalidWasmFile(_)), "{bad:?}: {e:?}");
    }
}

#[test]
fn host_clock_or_random_source_needs_a_non_deterministic_module() {
    let e = spec_error(&with(|v| v["wasm"]["clock"] = json!("host")));
    assert!(matches!(e, SpecError::HostSourceOnDeterministic { field: "wasm.clock", .. }), "{e:?}");
    let e = spec_error(&with(|v| v["wasm"]["random"] = json!("host")));
    assert!(matches!(e, SpecError::HostSourceOnDeterministic { field: "wasm.random", .. }), "{e:?}");
    let m = load(&with(|v| {
        v["wasm"]["clock"] = json!("host");
        v["wasm"]["random"] = json!("host");
        v["deterministic"] = json!(false);
    }))
    .unwrap();
    let spec = m.wasm_spec(&m.render(&Default::default()).unwrap(), None).unwrap();
    assert!(!spec.determinism.fixed_clock && spec.determinism.random_seed.is_none());
}

#[test]
fn the_example_sources_are_the_docker_modules_sources() {
    // The WebAssembly twins build the same C files as their Docker modules.
    for (wasm, docker, file) in [
        ("lilysay-wasm", "lilysay", "lilysay.c"),
        ("hashchain-wasm", "hashchain", "hashchain.c"),
        ("wordcount-file-wasm", "wordcount-file", "wordcount-file.c"),
    ] {
        let a = fs::read(modules_dir().join(wasm).join(file)).unwrap();
        let b = fs::read(modules_dir().join(docker).join(file)).unwrap();
        assert!(a == b, "modules/{wasm}/{file} differs from modules/{docker}/{file}: copy it over and rebuild ({wasm}/build.sh)");
    }
}

/// Runs `module` with `inputs` on a fresh engine; returns the result folder (kept in `tmp`).
async fn run(module: &str, inputs: &[&str], tmp: &Path) -> (lilypad_wasm::WasmOutcome, PathBuf) {
    let m = Module::load(modules_dir().join(module)).unwrap();
    let run = m.render(&m.parse_inputs(inputs).unwrap()).unwrap();
    let spec = m.wasm_spec(&run, None).unwrap();
    let engine = WasmEngine::new(None).unwrap();
    let dir = tmp.join(format!("{module}-{}", inputs.join("-").replace(['/', ' '], "_")));
    let out = engine.run("job-example", &spec, &dir).await.unwrap();
    (out, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lilysay_wasm_prints_the_frog_of_lilysay() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, dir) = run("lilysay-wasm", &["Message=hi"], tmp.path()).await;
    assert_eq!(out.ending, Ending::Exited(0));
    let stdout = fs::read_to_string(dir.join("stdout")).unwrap();
    let expected = concat!(
        " ____\n",
        "< hi >\n",
        " ----\n",
        "        \\\n",
        "         \\       @..@\n",
        "          \\     (----)\n",
        "               ( >__< )\n",
        "        .------^^-~~-^^------.\n",
        "      .'   ~        ~    ~    '.\n",
        "     (  ~     ~   \\    /   ~    )\n",
        "      '.    ~      \\  /  ~    .'\n",
        "        '-._________\\/_____.-'\n",
        "   ~~~   ~~~~   ~~~    ~~~~   ~~~\n",
    );
    assert_eq!(stdout, expected);
    assert_eq!(fs::read_to_string(dir.join("outputs/lilysay.txt")).unwrap(), expected);
    assert_eq!(fs::read_to_string(dir.join("exitCode")).unwrap(), "0\n");
    assert_eq!(fs::read_to_string(dir.join("stderr")).unwrap(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_job_gives_the_same_result_cid_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    let (_, ra) = run("lilysay-wasm", &["Message=same bytes everywhere"], &a).await;
    let (_, rb) = run("lilysay-wasm", &["Message=same bytes everywhere"], &b).await;
    let ca = lilypad_store::cid_of_path(&ra).unwrap();
    let cb = lilypad_store::cid_of_path(&rb).unwrap();
    assert_eq!(ca, cb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashchain_wasm_computes_sha256_chains() {
    let tmp = tempfile::tempdir().unwrap();
    // one round: SHA-256("abc")
    let (out, dir) = run("hashchain-wasm", &["Rounds=1", "Message=abc"], tmp.path()).await;
    assert_eq!(out.ending, Ending::Exited(0));
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n";
    assert_eq!(fs::read_to_string(dir.join("stdout")).unwrap(), abc);
    assert_eq!(fs::read_to_string(dir.join("outputs/digest.txt")).unwrap(), abc);
    // two rounds: SHA-256 of those 32 bytes
    let (_, dir) = run("hashchain-wasm", &["Rounds=2", "Message=abc"], tmp.path()).await;
    assert_eq!(
        fs::read_to_string(dir.join("stdout")).unwrap(),
        "4f8b42c22dd3729b519ba6f68d2da7cc5b2d606d05daed5ad5128cc03e6c6358\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_module_reads_its_file_and_folder_inputs_through_a_read_only_preopen() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Module::load(modules_dir().join("wordcount-file-wasm")).unwrap();
    // the inputs folder as the runner lays it out: /inputs/<Name>
    let inputs = tmp.path().join("inputs");
    fs::create_dir_all(inputs.join("Text/sub")).unwrap();
    fs::write(inputs.join("Text/a.txt"), "one two three\n").unwrap();
    fs::write(inputs.join("Text/sub/c.txt"), "four\nfive six\n").unwrap();
    let cid = lilypad_store::cid_of_path(&inputs.join("Text")).unwrap();
    let run = m.render(&m.parse_inputs(&[format!("Text={cid}")]).unwrap()).unwrap();
    assert_eq!(run.argv(), ["wordcount-file", "/inputs/Text"]);
    let spec = m.wasm_spec(&run, Some(&inputs)).unwrap();
    let dir = tmp.path().join("result");
    let out = WasmEngine::new(None).unwrap().run("job-inputs", &spec, &dir).await.unwrap();
    assert_eq!(out.ending, Ending::Exited(0), "{}", fs::read_to_string(dir.join("stderr")).unwrap_or_default());
    let expected = "       1        3         14 a.txt\n       2        3         14 sub/c.txt\n       3        6         28 total (2 files)\n";
    assert_eq!(fs::read_to_string(dir.join("stdout")).unwrap(), expected, "the same counts as the Docker module's");
    assert_eq!(fs::read_to_string(dir.join("outputs/counts.txt")).unwrap(), expected);
    // another CID, another seed (the argv alone is the same for every input)
    let other = m.render(&m.parse_inputs(&["Text=bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"]).unwrap()).unwrap();
    assert_ne!(m.wasm_spec(&other, None).unwrap().determinism.random_seed, spec.determinism.random_seed);
}
