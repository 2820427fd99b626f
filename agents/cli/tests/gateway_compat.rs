//! The gateway's OpenAI- and Ollama-compatible endpoints with the official Python clients
//! (`openai`, `ollama`, from PyPI: tools/bootstrap --gateway), against `lilypad gateway serve` on
//! a `lilypad devnet` running the LLM module modules/ollama-pipeline: a chat, a completion, a
//! streamed chat, the model lists, a bad key, an unknown model, too little credit
//! (tests/compat/clients.py). Then the per-key rate limit: 429 with `Retry-After`, as a problem
//! on the REST API and in OpenAI's shape on /v1; every item of the gateway's streams against
//! the item schemas of its OpenAPI document (tests/compat/streams.py); and the OpenAPI fuzzer.
//!
//! Needs anvil (tools/bootstrap), Docker and the ollama-pipeline build's tools
//! (tools/bootstrap --docker), python3 with the clients, schemathesis and jsonschema
//! (tools/bootstrap --gateway).

use std::process::{Command, Stdio};

mod common;
use common::{text, Devnet, GatewayProc};

const MODEL: &str = "ollama-pipeline:smollm2-135m";

fn admin(devnet: &Devnet, db: &str, args: &[&str]) -> String {
    let mut all = vec!["gateway", "--db", db];
    all.extend_from_slice(args);
    let out = devnet.lilypad(&all);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "lilypad {all:?}: {stdout}{stderr}");
    stdout.trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_and_ollama_clients_run_llm_jobs_through_the_gateway() {
    let repo = common::repo();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python).args(["-c", "import openai, ollama"]).output().expect("python3 is needed for this test");
    assert!(probe.status.success(), "the openai and ollama packages are needed (tools/bootstrap --gateway): {}", String::from_utf8_lossy(&probe.stderr));
    common::build_llm_module(&repo);

    let devnet = Devnet::start(3);
    let db = devnet.dir().join("gw/compat.db").display().to_string();
    let key = admin(&devnet, &db, &["keys", "create", "alice"]);
    admin(&devnet, &db, &["credit", "add", "alice", "6LP"]);
    let poor = admin(&devnet, &db, &["keys", "create", "bob"]);
    admin(&devnet, &db, &["credit", "add", "bob", "1LP"]);
    let gw = GatewayProc::start(&devnet, &db, lilypad_devnet::accounts::JOB_CREATOR, devnet.dir().join("gateway-compat.log"), &["--rate", "50", "--burst", "100"]);

    let script = repo.join("agents/cli/tests/compat/clients.py");
    let out = Command::new(&python)
        .arg(&script)
        .env("GATEWAY", &gw.url)
        .env("KEY", &key)
        .env("POOR_KEY", &poor)
        .env("MODEL", MODEL)
        .stdin(Stdio::null())
        .output()
        .expect("run the client checks");
    let (stdout, stderr) = text(&out);
    let gw_log = std::fs::read_to_string(devnet.dir().join("gateway-compat.log")).unwrap_or_default();
    assert!(out.status.success(), "client checks failed:\n{stdout}\n{stderr}\ngateway:\n{gw_log}\ndevnet:\n{}", devnet.log());
    eprintln!("{stdout}");
    assert!(stdout.contains("all client checks passed"), "{stdout}");

    // Each answer was a job charged to alice: five LLM jobs at 1.05 LP.
    let http = reqwest::Client::new();
    let account: serde_json::Value = http.get(format!("{}/api/v1/account", gw.url)).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(account["balance"], (6 * common::LP - 5 * 1_050_000_000_000_000_000).to_string(), "{account}");
    let bob: serde_json::Value = http.get(format!("{}/api/v1/account", gw.url)).bearer_auth(&poor).send().await.unwrap().json().await.unwrap();
    assert_eq!(bob["balance"], common::LP.to_string(), "nothing charged for refused requests: {bob}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_past_its_rate_limit_gets_429_with_retry_after() {
    let devnet = Devnet::start(3);
    let db = devnet.dir().join("gw/limits.db").display().to_string();
    let key = admin(&devnet, &db, &["keys", "create", "carol"]);
    // a bucket of 3 requests, refilled at one every 10 s
    let gw = GatewayProc::start(&devnet, &db, lilypad_devnet::accounts::JOB_CREATOR, devnet.dir().join("gateway-limits.log"), &["--rate", "0.1", "--burst", "3"]);
    let http = reqwest::Client::new();
    for i in 0..3 {
        let r = http.get(format!("{}/api/v1/account", gw.url)).bearer_auth(&key).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "request {i} is within the burst");
    }
    let r = http.get(format!("{}/api/v1/account", gw.url)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&wait), "Retry-After {wait}");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["type"], "https://lilypad.dev/problems/rate-limited", "{p}");
    // the same bucket on the OpenAI endpoints, in OpenAI's shape
    let r = http.get(format!("{}/v1/models", gw.url)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "rate_limit_exceeded", "{e}");
    // another key has its own bucket
    let other = admin(&devnet, &db, &["keys", "create", "dave"]);
    let r = http.get(format!("{}/api/v1/account", gw.url)).bearer_auth(&other).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// What the gateway streams, read from a devnet gateway, against the item schemas of its own
/// OpenAPI document (tests/compat/streams.py): the market's event stream and a job's event
/// stream over a lilysay job's life, then OpenAI's SSE and Ollama's NDJSON streams (and the
/// non-streamed answers) of short LLM jobs.
#[tokio::test(flavor = "multi_thread")]
async fn the_streams_send_what_the_openapi_document_says() {
    let repo = common::repo();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python).args(["-c", "import jsonschema"]).output().expect("python3 is needed for this test");
    assert!(probe.status.success(), "the jsonschema package is needed (tools/bootstrap --gateway): {}", String::from_utf8_lossy(&probe.stderr));
    common::build_llm_module(&repo);

    let devnet = Devnet::start(3);
    let db = devnet.dir().join("gw/streams.db").display().to_string();
    let key = admin(&devnet, &db, &["keys", "create", "streams"]);
    // a lilysay job and six LLM jobs at 1.05 LP
    admin(&devnet, &db, &["credit", "add", "streams", "8LP"]);
    let log = devnet.dir().join("gateway-streams.log");
    let gw = GatewayProc::start(&devnet, &db, lilypad_devnet::accounts::JOB_CREATOR, log.clone(), &["--rate", "50", "--burst", "100"]);
    let out = Command::new(&python)
        .arg(repo.join("agents/cli/tests/compat/streams.py"))
        .env("GATEWAY", &gw.url)
        .env("KEY", &key)
        .env("MODEL", MODEL)
        .env("STREAMS_TIMEOUT", "420")
        .stdin(Stdio::null())
        .output()
        .expect("run the stream checks");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stream checks failed:\n{stdout}\n{stderr}\ngateway:\n{}\ndevnet:\n{}", gw.log(), devnet.log());
    eprintln!("{stdout}");
    assert!(stdout.contains("all stream checks passed"), "{stdout}");
}

/// The OpenAPI-driven fuzzer `schemathesis` (PyPI, tools/bootstrap --gateway) against a devnet
/// gateway, bounded in time: every answer has a documented status, content type and schema, no
/// 5xx, and requests the document refuses are refused. The key has no credit, so no request
/// starts a job (the client and stream tests above cover the answers of jobs that run); the
/// market's event stream, which never ends by itself, is left to the stream test.
#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_answers_as_its_openapi_document_says() {
    let probe = Command::new("schemathesis").arg("--version").output();
    assert!(probe.as_ref().is_ok_and(|o| o.status.success()), "schemathesis is needed (tools/bootstrap --gateway): {probe:?}");
    let devnet = Devnet::start(3);
    let db = devnet.dir().join("gw/fuzz.db").display().to_string();
    let key = admin(&devnet, &db, &["keys", "create", "fuzzer"]);
    let gw = GatewayProc::start(&devnet, &db, lilypad_devnet::accounts::JOB_CREATOR, devnet.dir().join("gateway-fuzz.log"), &["--rate", "1000", "--burst", "1000"]);
    let out = Command::new("schemathesis")
        .args(["run", &format!("{}/api/v1/openapi.json", gw.url), "--url", &gw.url])
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection"])
        .args(["--exclude-path", "/api/v1/events", "--max-examples", "25", "--max-time", "240", "--request-timeout", "10", "--seed", "1"])
        // its example cache (.schemathesis/) goes to the devnet's throwaway folder
        .current_dir(devnet.dir())
        .stdin(Stdio::null())
        .output()
        .expect("run schemathesis");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "schemathesis found problems:\n{stdout}\n{stderr}");
    eprintln!("{}", stdout.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"));
}
