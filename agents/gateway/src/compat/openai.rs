//! OpenAI's API: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`, with
//! `stream: true` as server-sent `chat.completion.chunk` / `text_completion` events ending with
//! `data: [DONE]`, and errors as `{"error": {"message", "type", "param", "code"}}`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{finish, messages, models, pieces, start, Answer, Generation, Message, KEEP_ALIVE};
use crate::api::AppState;
use crate::problem::{Kind, Problem};

/// An error in OpenAI's shape.
pub struct OpenAiError(pub Problem);

impl From<Problem> for OpenAiError {
    fn from(p: Problem) -> Self {
        OpenAiError(p)
    }
}

/// (status, type, code, param) for a problem.
fn shape(p: &Problem) -> (StatusCode, &'static str, Option<&'static str>, Option<&'static str>) {
    match p.kind {
        Some(Kind::MissingKey | Kind::InvalidKey | Kind::RevokedKey) => (StatusCode::UNAUTHORIZED, "invalid_request_error", Some("invalid_api_key"), None),
        Some(Kind::RateLimited) => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", Some("rate_limit_exceeded"), None),
        Some(Kind::InsufficientCredit) => (StatusCode::PAYMENT_REQUIRED, "insufficient_quota", Some("insufficient_quota"), None),
        Some(Kind::UnknownModule | Kind::InvalidModuleReference) => (StatusCode::NOT_FOUND, "invalid_request_error", Some("model_not_found"), Some("model")),
        Some(Kind::BadInputs | Kind::InvalidBody | Kind::UnsupportedMediaType) => (StatusCode::BAD_REQUEST, "invalid_request_error", None, None),
        Some(Kind::PayloadTooLarge) => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", None, None),
        Some(Kind::ChainUnavailable) => (StatusCode::SERVICE_UNAVAILABLE, "server_error", None, None),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None, None),
    }
}

fn error_body(p: &Problem) -> Value {
    let (_, ty, code, param) = shape(p);
    json!({"error": {"message": p.detail, "type": ty, "param": param, "code": code}})
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let (status, ..) = shape(&self.0);
        let mut r = (status, Json(error_body(&self.0))).into_response();
        if let Some(secs) = self.0.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

fn body_error(e: JsonRejection) -> OpenAiError {
    OpenAiError(Problem::new(Kind::InvalidBody, format!("{}: see https://platform.openai.com/docs/api-reference", e.body_text())))
}

type Shared = State<Arc<AppState>>;

/// `GET /v1/models`: the LLM modules published on chain that the gateway runs.
pub async fn list_models(State(state): Shared, headers: HeaderMap) -> Result<Json<Value>, OpenAiError> {
    crate::api::authenticate(&state, &headers).await?;
    let data: Vec<Value> = models(&state).into_iter().map(|m| json!({"id": m.name, "object": "model", "created": 0, "owned_by": m.publisher})).collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

#[derive(Deserialize)]
pub struct ChatRequest {
    model: String,
    messages: Vec<Message>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    n: Option<u64>,
}

#[derive(Deserialize)]
pub struct CompletionRequest {
    model: String,
    prompt: Value,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    n: Option<u64>,
}

fn one_choice(n: Option<u64>) -> Result<(), OpenAiError> {
    match n {
        None | Some(1) => Ok(()),
        Some(n) => Err(OpenAiError(Problem::new(Kind::InvalidBody, format!("n={n}: each request runs one job and gives one choice; send n=1")))),
    }
}

fn finish_reason(a: &Answer) -> &'static str {
    if a.done_reason == "length" {
        "length"
    } else {
        "stop"
    }
}

fn usage(a: &Answer) -> Value {
    json!({"prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens, "total_tokens": a.prompt_tokens + a.completion_tokens})
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(State(state): Shared, headers: HeaderMap, body: Result<Json<ChatRequest>, JsonRejection>) -> Result<Response, OpenAiError> {
    let Json(r) = body.map_err(body_error)?;
    one_choice(r.n)?;
    if r.max_tokens == Some(0) || r.max_completion_tokens == Some(0) {
        return Err(OpenAiError(Problem::new(Kind::InvalidBody, "max_tokens and max_completion_tokens must be at least 1")));
    }
    let g = Generation {
        model: r.model.clone(),
        messages: Some(messages(&r.messages)?),
        max_tokens: r.max_completion_tokens.or(r.max_tokens),
        temperature: r.temperature,
        top_p: r.top_p,
        seed: r.seed,
        ..Default::default()
    };
    let (_, job) = start(&state, &headers, &g).await?;
    let id = format!("chatcmpl-{}", job.id);
    let created = job.created_at / 1000;
    let model = r.model;
    if r.stream.unwrap_or(false) {
        let chunk = move |delta: Value, reason: Option<&str>| {
            json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "system_fingerprint": null,
                   "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": reason}]})
        };
        let stream = answer_stream(state, job, move |a| {
            let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
            events.extend(pieces(&a.text).into_iter().map(|p| chunk(json!({"content": p}), None)));
            let mut last = chunk(json!({}), Some(finish_reason(a)));
            last["usage"] = usage(a);
            events.push(last);
            events
        });
        return Ok(stream.into_response());
    }
    let a = finish(state, job).await?;
    Ok(Json(json!({
        "id": id, "object": "chat.completion", "created": created, "model": model, "system_fingerprint": null,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": a.text, "refusal": null}, "logprobs": null, "finish_reason": finish_reason(&a)}],
        "usage": usage(&a),
    }))
    .into_response())
}

/// `POST /v1/completions`: the prompt is one user turn of the module's chat template.
pub async fn completions(State(state): Shared, headers: HeaderMap, body: Result<Json<CompletionRequest>, JsonRejection>) -> Result<Response, OpenAiError> {
    let Json(r) = body.map_err(body_error)?;
    one_choice(r.n)?;
    let prompt = match &r.prompt {
        Value::String(s) => s.clone(),
        Value::Array(a) if a.len() == 1 && a[0].is_string() => a[0].as_str().unwrap_or_default().to_string(),
        _ => return Err(OpenAiError(Problem::new(Kind::InvalidBody, "prompt must be a string (or a list of one string): each request runs one job"))),
    };
    let g = Generation { model: r.model.clone(), prompt: Some(prompt), max_tokens: r.max_tokens, temperature: r.temperature, top_p: r.top_p, seed: r.seed, ..Default::default() };
    let (_, job) = start(&state, &headers, &g).await?;
    let id = format!("cmpl-{}", job.id);
    let created = job.created_at / 1000;
    let model = r.model;
    if r.stream.unwrap_or(false) {
        let chunk = move |text: &str, reason: Option<&str>| {
            json!({"id": id, "object": "text_completion", "created": created, "model": model,
                   "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": reason}]})
        };
        let stream = answer_stream(state, job, move |a| {
            let mut events: Vec<Value> = pieces(&a.text).iter().map(|p| chunk(p, None)).collect();
            let mut last = chunk("", Some(finish_reason(a)));
            last["usage"] = usage(a);
            events.push(last);
            events
        });
        return Ok(stream.into_response());
    }
    let a = finish(state, job).await?;
    Ok(Json(json!({
        "id": id, "object": "text_completion", "created": created, "model": model, "system_fingerprint": null,
        "choices": [{"index": 0, "text": a.text, "logprobs": null, "finish_reason": finish_reason(&a)}],
        "usage": usage(&a),
    }))
    .into_response())
}

/// Server-sent events: keep-alive comments while the job runs, then `events(answer)` as `data:`
/// lines, then `data: [DONE]`; a job without an answer ends the stream with an error event.
fn answer_stream(
    state: Arc<AppState>,
    job: crate::db::JobRow,
    events: impl FnOnce(&Answer) -> Vec<Value> + Send + 'static,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let list = match finish(state, job).await {
            Ok(a) => events(&a),
            Err(p) => vec![error_body(&p)],
        };
        for v in list {
            if tx.send(Event::default().data(v.to_string())).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Event::default().data("[DONE]")).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}
