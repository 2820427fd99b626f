//! OpenAI- and Ollama-compatible endpoints ([`openai`], [`ollama`]): the clients people already
//! use, pointed at the gateway, run LLM modules as jobs on chain.
//!
//! Each request is one job, made through the same path as `POST /api/v1/jobs`
//! ([`crate::api::run_job`]: the module checked as published, the inputs checked, the key's
//! account charged, `runJob` sent). The answer exists only once the job has run and its outputs
//! have been fetched and verified, so a streamed answer is sent in pieces after that, with
//! keep-alives while waiting.
//!
//! Which modules are models: those published on chain whose folder the gateway holds (pinned to
//! the published spec), whose spec declares a string input `Prompt` and writes Ollama's answer
//! to `/outputs/response.json` (an `args` entry). A module that also declares a `Messages`
//! input gets chat requests as that JSON message list (rendered with the model's own chat
//! template); otherwise the conversation is rendered into `Prompt`.

pub mod ollama;
pub mod openai;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::api::{authenticate, run_job, AppState};
use crate::db::{is_final, Account, JobRow};
use crate::problem::{Kind, Problem};
use lilypad_module::{InputType, Module};

/// Where an LLM module writes its answer.
pub const RESPONSE_PATH: &str = "/outputs/response.json";

/// How long a request waits for its job before answering with the job's id instead.
pub const WAIT_LIMIT: Duration = Duration::from_secs(20 * 60);

/// How often a stream says it is still waiting.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// A published LLM module the gateway can run.
#[derive(Clone, Debug)]
pub struct Model {
    /// `name:version`, the model's name in both APIs.
    pub name: String,
    pub publisher: String,
    pub spec_hash: String,
    /// Whether chat requests go to a `Messages` input.
    pub chat_input: bool,
    /// The inputs the module declares.
    pub inputs: Vec<String>,
}

/// Whether a module folder is an LLM module (see the module documentation).
pub fn is_llm(m: &Module) -> bool {
    let spec = m.spec();
    spec.inputs.get("Prompt").is_some_and(|i| i.ty == InputType::String) && spec.args.iter().any(|a| a == RESPONSE_PATH)
}

/// The LLM modules published on chain that this gateway holds, by name.
pub fn models(state: &AppState) -> Vec<Model> {
    let view = state.market.view.read().unwrap_or_else(|p| p.into_inner());
    let mut out: Vec<Model> = view
        .book
        .modules()
        .filter_map(|(_, m)| {
            let local = state.modules.get(&m.reference()).filter(|l| lilypad_client::check_pinned(l, &m.spec).is_ok())?;
            is_llm(local).then(|| Model {
                name: m.reference(),
                publisher: m.publisher.to_string(),
                spec_hash: m.spec.specHash.to_string(),
                chat_input: local.spec().inputs.get("Messages").is_some_and(|i| i.ty == InputType::String),
                inputs: local.spec().inputs.iter().map(|(k, _)| k.to_string()).collect(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// One chat message, as both APIs send it (OpenAI's content may also be a list of parts).
#[derive(Clone, Debug, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Value,
}

/// What to generate, in either dialect.
#[derive(Debug, Default)]
pub struct Generation {
    pub model: String,
    pub prompt: Option<String>,
    pub messages: Option<Vec<(String, String)>>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u64>,
    pub seed: Option<u64>,
}

impl Generation {
    /// Checks what the modules' inputs would refuse anyway, before the key is charged.
    pub fn check(&self) -> Result<(), Problem> {
        let bad = |what: String| Err(Problem::new(Kind::InvalidBody, what));
        if self.prompt.is_none() && self.messages.is_none() {
            return bad("give a prompt or messages".into());
        }
        if self.max_tokens == Some(0) {
            return bad("the most tokens to generate must be at least 1".into());
        }
        if let Some(t) = self.temperature.filter(|t| !(0.0..=2.0).contains(t)) {
            return bad(format!("temperature {t}: give a number from 0 to 2"));
        }
        if let Some(p) = self.top_p.filter(|p| !(0.0..=1.0).contains(p)) {
            return bad(format!("top_p {p}: give a number from 0 to 1"));
        }
        Ok(())
    }
}

/// The text of a message's content: a string, or OpenAI's list of `{"type": "text"}` parts.
pub fn message_text(m: &Message, index: usize) -> Result<String, Problem> {
    match &m.content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for p in parts {
                match (p["type"].as_str(), p["text"].as_str()) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => return Err(Problem::new(Kind::InvalidBody, format!("messages[{index}]: only text content parts are supported (type \"text\")"))),
                }
            }
            Ok(text)
        }
        _ => Err(Problem::new(Kind::InvalidBody, format!("messages[{index}].content must be a string or a list of text parts"))),
    }
}

/// Checks roles and turns messages into (role, text).
pub fn messages(list: &[Message]) -> Result<Vec<(String, String)>, Problem> {
    if list.is_empty() {
        return Err(Problem::new(Kind::InvalidBody, "messages must hold at least one message"));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                other => return Err(Problem::new(Kind::InvalidBody, format!("messages[{i}].role {other:?}: use system, user or assistant"))),
            };
            Ok((role.to_string(), message_text(m, i)?))
        })
        .collect()
}

/// A conversation as one prompt, for a module without a `Messages` input: a lone user message
/// is the prompt itself; otherwise each turn in ChatML (the module puts the whole text in its
/// own template as the user's turn).
pub fn render_chatml(messages: &[(String, String)]) -> String {
    if let [(role, text)] = messages {
        if role == "user" {
            return text.clone();
        }
    }
    let mut out = String::new();
    for (role, text) in messages {
        out.push_str(&format!("<|im_start|>{role}\n{text}<|im_end|>\n"));
    }
    out
}

/// The module's inputs for a generation (only those the module declares).
pub fn inputs_for(model: &Model, g: &Generation) -> Vec<String> {
    let has = |name: &str| model.inputs.iter().any(|i| i == name);
    let mut items = Vec::new();
    match (&g.messages, &g.prompt) {
        (Some(list), _) if model.chat_input => {
            let json: Vec<Value> = list.iter().map(|(r, c)| json!({"role": r, "content": c})).collect();
            items.push(format!("Messages={}", Value::Array(json)));
        }
        (Some(list), _) => items.push(format!("Prompt={}", render_chatml(list))),
        (None, Some(p)) => items.push(format!("Prompt={p}")),
        (None, None) => {}
    }
    let mut opt = |name: &str, v: Option<String>| {
        if let Some(v) = v.filter(|_| has(name)) {
            items.push(format!("{name}={v}"));
        }
    };
    opt("MaxTokens", g.max_tokens.map(|v| v.to_string()));
    opt("Temperature", g.temperature.map(|v| v.to_string()));
    opt("TopP", g.top_p.map(|v| v.to_string()));
    opt("TopK", g.top_k.map(|v| v.to_string()));
    opt("Seed", g.seed.map(|v| v.to_string()));
    items
}

/// The model's answer, from the job's `response.json`.
#[derive(Clone, Debug)]
pub struct Answer {
    pub job_id: String,
    pub text: String,
    /// `stop` or `length`.
    pub done_reason: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub created_ms: i64,
}

/// Finds the model (an unknown one is `UnknownModule`), checks the key, charges and submits.
pub async fn start(state: &AppState, headers: &axum::http::HeaderMap, g: &Generation) -> Result<(Account, JobRow), Problem> {
    let (key_id, account) = authenticate(state, headers).await?;
    let all = models(state);
    let Some(model) = all.iter().find(|m| m.name == g.model) else {
        let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
        return Err(Problem::new(
            Kind::UnknownModule,
            format!("model {:?} is not an LLM module published here; models: {}", g.model, if names.is_empty() { "none".into() } else { names.join(", ") }),
        ));
    };
    g.check()?;
    let items = inputs_for(model, g);
    let (job, _) = run_job(state, &key_id, &account, &model.name, items, None).await?;
    Ok((account, job))
}

/// Waits until the job's outputs are fetched (or it ends without them) and reads the answer.
pub async fn finish(state: Arc<AppState>, job: JobRow) -> Result<Answer, Problem> {
    let mut updates = state.market.job_updates.subscribe();
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    let id = job.id.clone();
    loop {
        let current = state.db.job(&id).await.map_err(Problem::internal)?.ok_or_else(|| Problem::internal(format!("job {id} vanished")))?;
        if current.outputs_at.is_some() {
            return read_answer(&state, &current);
        }
        if is_final(&current.state) {
            return Err(Problem::new(
                Kind::Internal,
                format!("job {id} ended {} without a result{}; its credit is refunded if the chain refunded it (GET /api/v1/jobs/{id})", current.state, current.error.map(|e| format!(": {e}")).unwrap_or_default()),
            ));
        }
        let tick = tokio::time::sleep(Duration::from_secs(2));
        tokio::select! {
            _ = tick => {}
            m = updates.recv() => if let Err(broadcast::error::RecvError::Closed) = m { return Err(Problem::internal("the gateway is stopping")) },
            _ = tokio::time::sleep_until(deadline) => return Err(Problem::new(
                Kind::Internal,
                format!("job {id} has no result after {} s; follow it with GET /api/v1/jobs/{id}", WAIT_LIMIT.as_secs()),
            )),
        }
    }
}

/// The answer an LLM module wrote to `outputs/response.json` in a job's fetched outputs
/// (`dir`): Ollama's `response`, or `message.content` for a chat; `None` when there is no such
/// file or it has neither (another kind of module).
pub fn answer_text(dir: &std::path::Path) -> Option<String> {
    let file = dir.join("outputs/response.json");
    // an answer's file is small (the module's outputs are capped); anything huge is not one
    if std::fs::metadata(&file).ok()?.len() > 4 * 1024 * 1024 {
        return None;
    }
    let r: Value = serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()?;
    r["response"].as_str().or_else(|| r["message"]["content"].as_str()).map(str::to_string)
}

fn read_answer(state: &AppState, job: &JobRow) -> Result<Answer, Problem> {
    let dir = state.market.outputs_dir(&job.id);
    let exit = std::fs::read_to_string(dir.join("exitCode")).unwrap_or_default();
    let failed = |why: String| Problem::new(Kind::Internal, format!("job {}: {why} (GET /api/v1/jobs/{}/outputs)", job.id, job.id));
    if exit.trim() != "0" {
        let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
        return Err(failed(format!("the model exited with status {}: {}", exit.trim(), stderr.trim())));
    }
    let body = std::fs::read_to_string(dir.join("outputs/response.json")).map_err(|e| failed(format!("no outputs/response.json: {e}")))?;
    let r: Value = serde_json::from_str(&body).map_err(|e| failed(format!("outputs/response.json is not JSON: {e}")))?;
    let text = r["response"].as_str().or_else(|| r["message"]["content"].as_str()).ok_or_else(|| failed("outputs/response.json has no response or message.content".into()))?;
    Ok(Answer {
        job_id: job.id.clone(),
        text: text.to_string(),
        done_reason: r["done_reason"].as_str().unwrap_or("stop").to_string(),
        prompt_tokens: r["prompt_eval_count"].as_u64().unwrap_or(0),
        completion_tokens: r["eval_count"].as_u64().unwrap_or(0),
        created_ms: job.created_at,
    })
}

/// The answer in pieces for a stream: words with the whitespace before them.
pub fn pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if !c.is_whitespace() || cur.chars().last().is_some_and(char::is_whitespace) || cur.is_empty() {
            cur.push(c);
        } else {
            out.push(std::mem::take(&mut cur));
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_join_back_to_the_text() {
        for t in ["", "one", "Hello, world! How are you?", "  lead and trail  ", "a\n\nb c\td"] {
            assert_eq!(pieces(t).concat(), t);
        }
        assert!(pieces("Hello big world").len() >= 3);
    }

    #[test]
    fn a_lone_user_message_is_the_prompt_and_a_conversation_is_chatml() {
        assert_eq!(render_chatml(&[("user".into(), "hi".into())]), "hi");
        let r = render_chatml(&[("system".into(), "be brief".into()), ("user".into(), "hi".into())]);
        assert_eq!(r, "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n");
    }

    #[test]
    fn options_go_only_to_inputs_the_module_declares() {
        let model = Model { name: "m:1".into(), publisher: String::new(), spec_hash: String::new(), chat_input: false, inputs: vec!["Prompt".into(), "MaxTokens".into()] };
        let g = Generation { model: "m:1".into(), prompt: Some("x=y".into()), max_tokens: Some(5), temperature: Some(0.5), ..Default::default() };
        assert_eq!(inputs_for(&model, &g), vec!["Prompt=x=y".to_string(), "MaxTokens=5".to_string()]);
        let chat = Model { chat_input: true, inputs: vec!["Prompt".into(), "Messages".into()], ..model };
        let g = Generation { model: "m:1".into(), messages: Some(vec![("user".into(), "hi".into())]), ..Default::default() };
        assert_eq!(inputs_for(&chat, &g), vec![r#"Messages=[{"content":"hi","role":"user"}]"#.to_string()]);
    }

    #[test]
    fn roles_are_checked_and_text_parts_joined() {
        let list: Vec<Message> = serde_json::from_value(json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])).unwrap();
        assert_eq!(messages(&list).unwrap(), vec![("user".to_string(), "ab".to_string())]);
        let bad: Vec<Message> = serde_json::from_value(json!([{"role": "tool", "content": "x"}])).unwrap();
        assert!(messages(&bad).unwrap_err().detail.contains("tool"));
        assert!(messages(&[]).is_err());
    }
}
