//! Ollama's API: `POST /api/generate`, `POST /api/chat`, `GET /api/tags`; streamed answers
//! (Ollama's default, `"stream": true`) as NDJSON, errors as `{"error": "..."}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{finish, messages, models, pieces, start, Answer, Generation, Message, KEEP_ALIVE};
use crate::api::AppState;
use crate::problem::{Kind, Problem};

/// An error in Ollama's shape.
pub struct OllamaError(pub Problem);

impl From<Problem> for OllamaError {
    fn from(p: Problem) -> Self {
        OllamaError(p)
    }
}

fn status(p: &Problem) -> StatusCode {
    match p.kind {
        Some(Kind::UnknownModule | Kind::InvalidModuleReference) => StatusCode::NOT_FOUND,
        Some(Kind::BadInputs | Kind::InvalidBody | Kind::UnsupportedMediaType) => StatusCode::BAD_REQUEST,
        Some(k) => k.status(),
        None => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        let mut r = (status(&self.0), Json(json!({"error": self.0.detail}))).into_response();
        if let Some(secs) = self.0.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

fn body_error(e: JsonRejection) -> OllamaError {
    OllamaError(Problem::new(Kind::InvalidBody, format!("{}: see https://github.com/ollama/ollama/blob/main/docs/api.md", e.body_text())))
}

type Shared = State<Arc<AppState>>;

/// Ollama's `options` the modules understand.
#[derive(Default, Deserialize)]
pub struct Options {
    #[serde(default)]
    num_predict: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    top_k: Option<u64>,
    #[serde(default)]
    seed: Option<u64>,
}

#[derive(Deserialize)]
pub struct GenerateRequest {
    model: String,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    options: Option<Options>,
}

#[derive(Deserialize)]
pub struct ChatRequest {
    model: String,
    messages: Vec<Message>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    options: Option<Options>,
}

/// `GET /api/tags`: the LLM modules published on chain that the gateway runs.
pub async fn tags(State(state): Shared, headers: HeaderMap) -> Result<Json<Value>, OllamaError> {
    crate::api::authenticate(&state, &headers).await?;
    let list: Vec<Value> = models(&state)
        .into_iter()
        .map(|m| {
            json!({"name": m.name, "model": m.name, "modified_at": "1970-01-01T00:00:00Z", "size": 0, "digest": m.spec_hash,
                   "details": {"format": "gguf", "family": "", "families": null, "parameter_size": "", "quantization_level": ""}})
        })
        .collect();
    Ok(Json(json!({"models": list})))
}

fn generation(model: &str, options: Option<Options>) -> Generation {
    let o = options.unwrap_or_default();
    Generation { model: model.to_string(), max_tokens: o.num_predict, temperature: o.temperature, top_p: o.top_p, top_k: o.top_k, seed: o.seed, ..Default::default() }
}

fn rfc3339(ms: i64) -> String {
    // days since 1970 to a civil date (Howard Hinnant's algorithm)
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The last object of an answer: `done` with its counts.
fn done(mut v: Value, a: &Answer) -> Value {
    v["done"] = true.into();
    v["done_reason"] = a.done_reason.clone().into();
    v["prompt_eval_count"] = a.prompt_tokens.into();
    v["eval_count"] = a.completion_tokens.into();
    for k in ["total_duration", "load_duration", "prompt_eval_duration", "eval_duration"] {
        v[k] = 0.into();
    }
    v
}

/// `POST /api/generate`.
pub async fn generate(State(state): Shared, headers: HeaderMap, body: Result<Json<GenerateRequest>, JsonRejection>) -> Result<Response, OllamaError> {
    let Json(r) = body.map_err(body_error)?;
    let Some(prompt) = r.prompt else {
        return Err(OllamaError(Problem::new(Kind::InvalidBody, "give a prompt (a string)")));
    };
    let mut g = generation(&r.model, r.options);
    match r.system.filter(|s| !s.is_empty()) {
        Some(system) => g.messages = Some(vec![("system".into(), system), ("user".into(), prompt)]),
        None => g.prompt = Some(prompt),
    }
    let (_, job) = start(&state, &headers, &g).await?;
    let created = rfc3339(job.created_at);
    let model = r.model;
    let part = move |text: &str| json!({"model": model, "created_at": created, "response": text, "done": false});
    if r.stream.unwrap_or(true) {
        return Ok(ndjson(state, job, part));
    }
    let a = finish(state, job).await?;
    Ok(Json(done(part(&a.text), &a)).into_response())
}

/// `POST /api/chat`.
pub async fn chat(State(state): Shared, headers: HeaderMap, body: Result<Json<ChatRequest>, JsonRejection>) -> Result<Response, OllamaError> {
    let Json(r) = body.map_err(body_error)?;
    let mut g = generation(&r.model, r.options);
    g.messages = Some(messages(&r.messages)?);
    let (_, job) = start(&state, &headers, &g).await?;
    let created = rfc3339(job.created_at);
    let model = r.model;
    let part = move |text: &str| json!({"model": model, "created_at": created, "message": {"role": "assistant", "content": text}, "done": false});
    if r.stream.unwrap_or(true) {
        return Ok(ndjson(state, job, part));
    }
    let a = finish(state, job).await?;
    Ok(Json(done(part(&a.text), &a)).into_response())
}

/// NDJSON: an empty part every few seconds while the job runs (Ollama's own streams send such
/// parts too), then the answer in pieces, the last one `done`; a job without an answer ends the
/// stream with `{"error": ...}`.
fn ndjson(state: Arc<AppState>, job: crate::db::JobRow, part: impl Fn(&str) -> Value + Send + Sync + 'static) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(64);
    tokio::spawn(async move {
        let line = |v: Value| format!("{v}\n");
        let waiting = finish(state, job);
        tokio::pin!(waiting);
        let mut tick = tokio::time::interval(KEEP_ALIVE);
        tick.tick().await;
        let answer = loop {
            tokio::select! {
                a = &mut waiting => break a,
                _ = tick.tick() => if tx.send(line(part(""))).await.is_err() { return },
            }
        };
        let lines: Vec<String> = match answer {
            Ok(a) => {
                let mut l: Vec<String> = pieces(&a.text).iter().map(|p| line(part(p))).collect();
                l.push(line(done(part(""), &a)));
                l
            }
            Err(p) => vec![line(json!({"error": p.detail}))],
        };
        for l in lines {
            if tx.send(l).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|l| (Ok::<_, std::convert::Infallible>(l), rx)) });
    let mut r = Body::from_stream(stream).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_798_502_400_000), "2026-12-29T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400_000 + 3_723_000), "2000-02-29T01:02:03Z");
    }
}
