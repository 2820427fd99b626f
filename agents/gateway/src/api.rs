//! The REST API under `/api/v1`, the dashboard at `/`, and the OpenAPI document.
//!
//! Every route is registered in [`router`] (one `.route(...)` call per path: the OpenAPI sync
//! test reads them from this file and compares them with [`crate::openapi::document`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lilypad_module::Module;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::compat;
use crate::db::{is_final, Account, Db, DbError, JobRow, KeyCheck, NewJob};
use crate::market::Market;
use crate::problem::{Kind, Problem};
use crate::uploads::Uploads;

/// Limits of the API.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Requests per second each key may make, sustained.
    pub rate_per_sec: f64,
    /// Requests a key may make at once (the bucket's size).
    pub burst: u32,
    /// Largest request body, bytes.
    pub body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { rate_per_sec: 5.0, burst: 20, body_bytes: 64 * 1024 }
    }
}

/// What the handlers share.
pub struct AppState {
    pub db: Arc<Db>,
    pub market: Arc<Market>,
    /// Local module folders by `name:version`, for input checks and `/modules` details.
    pub modules: BTreeMap<String, Module>,
    pub limits: Limits,
    /// Folders of the other published modules, fetched by CID for input checks.
    pub published: crate::published::PublishedModules,
    /// Uploaded files and folders ([`crate::uploads`]).
    pub uploads: Arc<Uploads>,
    /// The trustless gateway over the uploads' blockstore (`/ipfs/<cid>`).
    pub(crate) ipfs: Router,
    buckets: StdMutex<HashMap<String, (f64, Instant)>>,
    /// Open `/api/v1/events` streams (no key needed): at most
    /// [`crate::streams::MAX_OPEN_EVENT_STREAMS`].
    pub(crate) event_streams: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn new(
        db: Arc<Db>,
        market: Arc<Market>,
        modules: Vec<Module>,
        limits: Limits,
        published: crate::published::PublishedModules,
        uploads: Arc<Uploads>,
    ) -> Arc<AppState> {
        let modules = modules.into_iter().map(|m| (m.reference().to_string(), m)).collect();
        let ipfs = lilypad_store::outputs_server::router(uploads.store().clone());
        Arc::new(AppState {
            db,
            market,
            modules,
            limits,
            published,
            uploads,
            ipfs,
            buckets: StdMutex::new(HashMap::new()),
            event_streams: Arc::new(tokio::sync::Semaphore::new(crate::streams::MAX_OPEN_EVENT_STREAMS)),
        })
    }

    /// Token bucket per key: `Err(seconds to wait)` when empty.
    fn take_token(&self, key_id: &str) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let burst = f64::from(self.limits.burst.max(1));
        let now = Instant::now();
        let (tokens, last) = buckets.entry(key_id.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.limits.rate_per_sec).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - *tokens) / self.limits.rate_per_sec.max(1e-9);
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

pub(crate) type Shared = State<Arc<AppState>>;

/// All the gateway's routes.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.limits.body_bytes;
    Router::new()
        .route("/", get(dashboard))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/jobs", post(create_job).get(list_jobs))
        .route("/api/v1/uploads", post(crate::upload_api::create_upload).get(crate::upload_api::list_uploads).layer(DefaultBodyLimit::disable()))
        .route("/ipfs/{cid}", get(crate::upload_api::ipfs))
        .route("/ipfs/{cid}/{*path}", get(crate::upload_api::ipfs))
        .route("/api/v1/jobs/{id}", get(get_job))
        .route("/api/v1/jobs/{id}/events", get(crate::streams::job_events))
        .route("/api/v1/jobs/{id}/outputs", get(list_outputs))
        .route("/api/v1/jobs/{id}/outputs/{*path}", get(get_output))
        .route("/api/v1/modules", get(modules))
        .route("/api/v1/account", get(account))
        .route("/api/v1/account/ledger", get(ledger))
        .route("/api/v1/events", get(crate::streams::market_events))
        .route("/v1/chat/completions", post(compat::openai::chat_completions))
        .route("/v1/completions", post(compat::openai::completions))
        .route("/v1/models", get(compat::openai::list_models))
        .route("/api/generate", post(compat::ollama::generate))
        .route("/api/chat", post(compat::ollama::chat))
        .route("/api/tags", get(compat::ollama::tags))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> Problem {
    Problem::new(Kind::NotFound, format!("{} is not an endpoint of this gateway: see /api/v1/openapi.json", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Problem {
    Problem::new(Kind::MethodNotAllowed, format!("{method} is not allowed on {}: see /api/v1/openapi.json", uri.path()))
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

async fn openapi() -> Response {
    let mut r = Json(crate::openapi::document()).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn db_problem(e: DbError) -> Problem {
    match e {
        DbError::InsufficientCredit { account, balance, needed } => Problem::new(
            Kind::InsufficientCredit,
            format!("account {account:?} has {balance} credit and the job costs {needed}: ask the gateway's operator to add credit"),
        )
        .with("balance", balance.to_string())
        .with("needed", needed.to_string()),
        other => Problem::internal(other),
    }
}

/// The caller's key and account, checked and rate limited.
pub(crate) async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<(String, Account), Problem> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Problem::new(Kind::MissingKey, "send your API key as `Authorization: Bearer <key>`"));
    };
    let presented = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).unwrap_or_default();
    match state.db.check_key(presented).await.map_err(Problem::internal)? {
        KeyCheck::Valid { key_id, account } => {
            state.take_token(&key_id).map_err(|wait| {
                let mut p = Problem::new(
                    Kind::RateLimited,
                    format!("key {key_id} may make {} requests per second (bursts of {}): retry in {wait} s", state.limits.rate_per_sec, state.limits.burst),
                );
                p.retry_after = Some(wait);
                p
            })?;
            Ok((key_id, account))
        }
        KeyCheck::Revoked { key_id } => {
            Err(Problem::new(Kind::RevokedKey, format!("key {key_id} was revoked: ask the gateway's operator for a new one")))
        }
        KeyCheck::Unknown => Err(Problem::new(Kind::InvalidKey, "this key is not known here: check it was copied whole (lpk_<id>_<secret>)")),
    }
}

// ---------------------------------------------------------------------- jobs

/// Inputs as `["Key=Value", ...]` or `{"Key": "Value", ...}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum InputsBody {
    List(Vec<String>),
    Map(BTreeMap<String, Value>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JobRequest {
    module: String,
    /// `None`: absent; `Some(None)`: `null`, which the document does not allow.
    #[serde(default, deserialize_with = "present")]
    inputs: Option<Option<InputsBody>>,
    #[serde(default, deserialize_with = "present")]
    idempotency_key: Option<Option<String>>,
}

/// A field that is there (even as `null`), told apart from one left out.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `?limit=` as the document gives it: an integer from 1 to `max`, `default` when left out.
pub(crate) fn limit_param(q: &HashMap<String, String>, default: i64, max: i64) -> Result<i64, Problem> {
    match q.get("limit") {
        None => Ok(default),
        Some(l) => match l.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(Problem::new(Kind::InvalidBody, format!("limit {l:?}: give an integer from 1 to {max}, or leave it out for {default}"))),
        },
    }
}

fn json_rejection(e: JsonRejection, limit: usize) -> Problem {
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            Problem::new(Kind::PayloadTooLarge, format!("request bodies may have at most {limit} bytes: send fewer or shorter inputs"))
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            Problem::new(Kind::UnsupportedMediaType, "send the job as JSON with `Content-Type: application/json`")
        }
        _ => Problem::new(
            Kind::InvalidBody,
            format!("{}: send {{\"module\": \"name:version\", \"inputs\": [\"Key=Value\"] or {{\"Key\": \"Value\"}}}}", e.body_text()),
        ),
    }
}

async fn create_job(State(state): Shared, headers: HeaderMap, body: Result<Json<JobRequest>, JsonRejection>) -> Result<Response, Problem> {
    let (key_id, account) = authenticate(&state, &headers).await?;
    let Json(request) = body.map_err(|e| json_rejection(e, state.limits.body_bytes))?;
    let items: Vec<String> = match request.inputs {
        None => Vec::new(),
        Some(None) => return Err(Problem::new(Kind::InvalidBody, "inputs is null: leave it out to use the module's defaults, or give [\"Key=Value\"] or {\"Key\": \"Value\"}")),
        Some(Some(InputsBody::List(l))) if l.is_empty() => return Err(Problem::new(Kind::InvalidBody, "inputs is empty: leave it out to use the module's defaults")),
        Some(Some(InputsBody::Map(m))) if m.is_empty() => return Err(Problem::new(Kind::InvalidBody, "inputs is empty: leave it out to use the module's defaults")),
        Some(Some(InputsBody::List(l))) => l,
        Some(Some(InputsBody::Map(m))) => m
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok(format!("{k}={s}")),
                Value::Number(n) => Ok(format!("{k}={n}")),
                Value::Bool(b) => Ok(format!("{k}={b}")),
                _ => Err(Problem::new(Kind::BadInputs, format!("input {k:?} must be a string, number or boolean"))),
            })
            .collect::<Result<_, _>>()?,
    };
    let idempotency = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(match request.idempotency_key {
            Some(None) => return Err(Problem::new(Kind::InvalidBody, "idempotencyKey is null: give a string or leave it out")),
            Some(Some(k)) => Some(k),
            None => None,
        })
        .filter(|k| !k.is_empty());
    if idempotency.as_ref().is_some_and(|k| k.len() > 200) {
        return Err(Problem::new(Kind::InvalidBody, "an idempotency key may have at most 200 characters"));
    }

    let (job, created) = run_job(&state, &key_id, &account, &request.module, items, idempotency.as_deref()).await?;
    if !created {
        let body = job_json(&state, &job).await?;
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    let body = job_json(&state, &job).await?;
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/jobs/{}", job.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// The one way a job is made, whatever the endpoint: the module checked as published on this
/// network, its inputs checked against the gateway's copy of its folder, the key's account
/// charged, `runJob` sent. `Ok((job, false))` is the job an earlier request with the same
/// idempotency key made (nothing charged again).
pub(crate) async fn run_job(
    state: &AppState,
    key_id: &str,
    account: &Account,
    module: &str,
    items: Vec<String>,
    idempotency: Option<&str>,
) -> Result<(JobRow, bool), Problem> {
    let reference = lilypad_module::parse_reference(module).map_err(|e| {
        Problem::new(Kind::InvalidModuleReference, format!("{e}: give the module as name:version, e.g. lilysay:0.1.0 (see GET /api/v1/modules)"))
    })?;
    // The module: published on this network, and its inputs valid, before anything is charged.
    let published = lilypad_client::published_module(&state.market.client, reference.id())
        .await
        .map_err(Problem::chain_unavailable)?;
    let Some(spec) = published else {
        let known: Vec<String> = {
            let view = state.market.view.read().unwrap_or_else(|p| p.into_inner());
            view.book.modules().map(|(_, m)| m.reference()).collect()
        };
        return Err(Problem::new(
            Kind::UnknownModule,
            format!("{reference} is not published on this network; published modules: {} (GET /api/v1/modules)", if known.is_empty() { "none".into() } else { known.join(", ") }),
        )
        .with("module", reference.to_string()));
    };
    // the module's folder: given with --module, else fetched by its pinned CID (any module
    // published since this gateway started too)
    let local = state.modules.get(&reference.to_string()).filter(|m| lilypad_client::check_pinned(m, &spec).is_ok()).cloned();
    let module = match local {
        Some(m) => Some(m),
        None => state.published.get(&state.market.client, &reference, &spec).await.map_err(|e| {
            Problem::new(Kind::ChainUnavailable, format!("cannot check the inputs of {reference}: {e}; nothing was charged, try again shortly"))
                .with("module", reference.to_string())
        })?,
    };
    let inputs = match &module {
        Some(m) => {
            let bad = |e: lilypad_module::InputError| {
                Problem::new(Kind::BadInputs, format!("{e}")).with("module", reference.to_string()).with("accepted", m.usage())
            };
            let parsed = m.parse_inputs(&items).map_err(bad)?;
            m.render(&parsed).map_err(bad)?;
            parsed.to_strings()
        }
        None => lilypad_module::parse_inputs(&items)
            .map_err(|e| Problem::new(Kind::BadInputs, format!("{e}")).with("module", reference.to_string()))?
            .to_strings(),
    };

    let new = NewJob {
        deployment: &state.market.deployment,
        account_id: &account.id,
        key_id,
        idempotency_key: idempotency,
        module: &reference.to_string(),
        inputs: &inputs,
        payment: spec.defaultPayment,
    };
    let (job, created) = state.db.create_job(new).await.map_err(db_problem)?;
    if !created {
        return Ok((job, false));
    }
    let job = match state.market.submit(&job).await {
        Ok(j) => j,
        Err(e) => {
            tracing::warn!(job = %job.id, error = %e, "submission not confirmed; the reconciler will settle it");
            state.db.job(&job.id).await.map_err(Problem::internal)?.unwrap_or(job)
        }
    };
    Ok((job, true))
}

async fn list_jobs(State(state): Shared, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Result<Json<Value>, Problem> {
    let (_, account) = authenticate(&state, &headers).await?;
    let limit = limit_param(&q, 50, 500)?;
    let jobs = state.db.jobs_of(&account.id, &state.market.deployment, limit).await.map_err(Problem::internal)?;
    let mut out = Vec::with_capacity(jobs.len());
    for j in &jobs {
        out.push(job_summary(j));
    }
    Ok(Json(json!({ "jobs": out })))
}

/// The caller's job `id`, or 404 (also for other accounts' jobs).
pub(crate) async fn own_job(state: &AppState, headers: &HeaderMap, id: &str) -> Result<JobRow, Problem> {
    let (_, account) = authenticate(state, headers).await?;
    match state.db.job(id).await.map_err(Problem::internal)? {
        Some(j) if j.account_id == account.id => Ok(j),
        _ => Err(Problem::new(Kind::JobNotFound, format!("no job {id:?} for this account: list yours with GET /api/v1/jobs"))),
    }
}

async fn get_job(State(state): Shared, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    let job = own_job(&state, &headers, &id).await?;
    Ok(Json(job_json(&state, &job).await?))
}

fn job_summary(j: &JobRow) -> Value {
    json!({
        "id": j.id,
        // the job's number on chain (`lilypad job <n>`); "chainId" is its older, misleading name
        "onchainJobId": j.chain_id,
        "chainId": j.chain_id,
        "deployment": j.deployment,
        "module": j.module,
        "inputs": j.inputs,
        "payment": j.payment.to_string(),
        "state": j.state,
        "final": is_final(&j.state),
        "dataId": j.data_id,
        "error": j.error,
        "provider": j.provider,
        "createdAt": j.created_at,
        "updatedAt": j.updated_at,
    })
}

const STDOUT_INLINE: u64 = 64 * 1024;

pub(crate) async fn job_json(state: &AppState, j: &JobRow) -> Result<Value, Problem> {
    let mut v = job_summary(j);
    let events = state.db.job_events(&j.id).await.map_err(Problem::internal)?;
    v["events"] = events
        .iter()
        .map(|e| json!({"state": e.state, "detail": e.detail, "block": e.block, "at": e.created_at}))
        .collect::<Vec<_>>()
        .into();
    v["outputsReady"] = j.outputs_at.is_some().into();
    if j.outputs_at.is_some() {
        let dir = state.market.outputs_dir(&j.id);
        let read_small = |name: &str| -> Option<String> {
            let p = dir.join(name);
            let meta = std::fs::metadata(&p).ok()?;
            (meta.len() <= STDOUT_INLINE).then(|| std::fs::read_to_string(&p).ok()).flatten()
        };
        let exit_code = read_small("exitCode").and_then(|s| s.trim().parse::<i64>().ok());
        v["result"] = json!({
            "stdout": read_small("stdout"),
            "stderr": read_small("stderr"),
            "exitCode": exit_code,
            "outputs": format!("/api/v1/jobs/{}/outputs", j.id),
            "text": if exit_code == Some(0) { crate::compat::answer_text(&dir) } else { None },
        });
    }
    Ok(v)
}

fn walk(dir: &FsPath, base: &FsPath, out: &mut Vec<(String, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, base, out),
            Ok(t) if t.is_file() => {
                let rel = p.strip_prefix(base).map(|r| r.to_string_lossy().into_owned()).unwrap_or_default();
                out.push((rel, e.metadata().map(|m| m.len()).unwrap_or(0)));
            }
            _ => {}
        }
    }
}

async fn list_outputs(State(state): Shared, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    let job = own_job(&state, &headers, &id).await?;
    if job.outputs_at.is_none() {
        return Err(Problem::new(
            Kind::OutputsNotReady,
            format!("job {id} is {}: outputs are available once a result is submitted and fetched; follow GET /api/v1/jobs/{id}/events", job.state),
        ));
    }
    let dir = state.market.outputs_dir(&job.id);
    let mut files = Vec::new();
    walk(&dir, &dir, &mut files);
    let files: Vec<Value> = files
        .into_iter()
        .map(|(path, size)| json!({"path": path, "size": size, "url": format!("/api/v1/jobs/{id}/outputs/{path}")}))
        .collect();
    Ok(Json(json!({"jobId": job.id, "dataId": job.data_id, "files": files})))
}

async fn get_output(State(state): Shared, headers: HeaderMap, Path((id, path)): Path<(String, String)>) -> Result<Response, Problem> {
    let job = own_job(&state, &headers, &id).await?;
    if job.outputs_at.is_none() {
        return Err(Problem::new(Kind::OutputsNotReady, format!("job {id} is {}: its outputs are not fetched yet", job.state)));
    }
    let rel = PathBuf::from(&path);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(Problem::new(Kind::OutputNotFound, format!("{path:?} is not a path inside the job's outputs")));
    }
    let file = state.market.outputs_dir(&job.id).join(rel);
    let bytes = match tokio::fs::read(&file).await {
        Ok(b) => b,
        Err(_) => return Err(Problem::new(Kind::OutputNotFound, format!("job {id} has no output file {path:?}: list them with GET /api/v1/jobs/{id}/outputs"))),
    };
    let content_type = if std::str::from_utf8(&bytes).is_ok() { "text/plain; charset=utf-8" } else { "application/octet-stream" };
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}

// ---------------------------------------------------------------------- modules, account, events

async fn modules(State(state): Shared) -> Json<Value> {
    let view = state.market.view.read().unwrap_or_else(|p| p.into_inner());
    let mut out = Vec::new();
    let mut entries: Vec<_> = view.book.modules().collect();
    entries.sort_by_key(|(_, m)| m.reference());
    for (id, m) in entries {
        let local = state.modules.get(&m.reference()).filter(|l| lilypad_client::check_pinned(l, &m.spec).is_ok());
        let inputs: Option<Vec<Value>> = local.map(|l| {
            l.spec()
                .inputs
                .iter()
                .map(|(name, spec)| {
                    let mut v = serde_json::to_value(spec).unwrap_or_else(|_| json!({}));
                    v["name"] = name.into();
                    v
                })
                .collect()
        });
        let offers: Vec<Value> = view
            .market
            .offers_for(*id)
            .into_iter()
            .map(|(provider, price)| json!({"provider": provider, "price": price.to_string()}))
            .collect();
        let r = &m.spec.requirements;
        out.push(json!({
            "module": m.reference(),
            "name": m.name,
            "version": m.version,
            "moduleId": id,
            "publisher": m.publisher,
            "specHash": m.spec.specHash,
            "price": m.spec.defaultPayment.to_string(),
            "runTimeout": m.spec.runTimeout,
            "requirements": {"cpuMilli": r.cpuMilli, "ramMb": r.ramMb, "diskMb": r.diskMb, "vramMb": r.vramMb, "gpus": r.gpus},
            "description": local.map(|l| l.spec().description.clone()),
            "inputs": inputs,
            "offers": offers,
        }));
    }
    Json(json!({"modules": out}))
}

async fn account(State(state): Shared, headers: HeaderMap) -> Result<Json<Value>, Problem> {
    let (key_id, account) = authenticate(&state, &headers).await?;
    Ok(Json(json!({"id": account.id, "name": account.name, "balance": account.balance.to_string(), "keyId": key_id})))
}

async fn ledger(State(state): Shared, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Result<Json<Value>, Problem> {
    let (_, account) = authenticate(&state, &headers).await?;
    let limit = limit_param(&q, 100, 1000)?;
    let entries = state.db.ledger(&account.id, limit).await.map_err(Problem::internal)?;
    let entries: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({"key": e.key, "kind": e.kind, "amount": e.amount.to_string(), "balanceAfter": e.balance_after.to_string(),
                   "jobId": e.job_id, "note": e.note, "at": e.created_at})
        })
        .collect();
    Ok(Json(json!({"balance": account.balance.to_string(), "entries": entries})))
}
