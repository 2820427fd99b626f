//! The schemas of the LLM endpoints' answers and of what the gateway streams: the two Server-Sent Events streams of the REST API
//! (`/api/v1/events`, `/api/v1/jobs/{id}/events`), OpenAI's `chat.completion.chunk` and
//! `text_completion` events, and Ollama's NDJSON parts.
//!
//! OpenAPI 3.1 has no way to say what each item of a stream is; OpenAPI 3.2 does, with the media
//! type's `itemSchema`. The document keeps 3.1 (what tools read today) and gives each stream's
//! item schema as the extension `x-itemSchema`, with 3.2's meaning: for `text/event-stream`
//! every event is an object `{event, data, id, retry}` (the fields of the SSE wire format; a
//! JSON `data` says so with `contentMediaType` and gives its schema in `contentSchema`), for
//! `application/x-ndjson` every line is one JSON value. The gateway's tests read real streams
//! from a devnet gateway and check every item against these schemas
//! (agents/cli/tests/compat/streams.py).

use serde_json::{json, Map, Value};

/// The component schemas of this module, by name.
pub fn components() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("MarketEvent".into(), market_event());
    m.insert("MarketStreamEvent".into(), market_stream_event());
    m.insert("JobStreamEvent".into(), job_stream_event());
    m.insert("ChatCompletion".into(), chat_completion());
    m.insert("Completion".into(), completion());
    m.insert("Usage".into(), usage());
    m.insert("ChatCompletionChunk".into(), chat_completion_chunk());
    m.insert("ChatCompletionStreamEvent".into(), openai_stream_event("ChatCompletionChunk"));
    m.insert("CompletionChunk".into(), completion_chunk());
    m.insert("CompletionStreamEvent".into(), openai_stream_event("CompletionChunk"));
    m.insert("OllamaGeneratePart".into(), ollama_part(json!({"response": {"type": "string"}}), "response"));
    m.insert("OllamaChatPart".into(), ollama_part(json!({"message": assistant_message()}), "message"));
    m
}

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

const ADDRESS: &str = "^0x[0-9a-fA-F]{40}$";
const BYTES32: &str = "^0x[0-9a-f]{64}$";
const DECIMAL: &str = "^(0|[1-9][0-9]*)$";

fn address() -> Value {
    json!({"type": "string", "pattern": ADDRESS})
}
fn bytes32() -> Value {
    json!({"type": "string", "pattern": BYTES32})
}
/// A uint too large for JSON numbers (amounts, job ids, bitmasks), as a decimal string.
fn decimal() -> Value {
    json!({"type": "string", "pattern": DECIMAL})
}
fn small(max: u64) -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": max})
}

/// The fields of each market event besides `type`, `block`, `logIndex` and `tx`, in the order
/// of the contract's event (`contracts/interfaces/ILilypadMarket.sol`); a test checks the names
/// against the market's ABI.
fn market_events() -> Vec<(&'static str, Vec<(&'static str, Value)>)> {
    let resources = json!({"type": "object", "additionalProperties": false, "required": ["cpuMilli", "ramMb", "diskMb", "vramMb", "gpus"],
        "properties": {"cpuMilli": small(u32::MAX.into()), "ramMb": small(u32::MAX.into()), "diskMb": small(u32::MAX.into()), "vramMb": small(u32::MAX.into()), "gpus": small(255)}});
    vec![
        ("JobCreated", vec![("id", decimal()), ("client", address()), ("payee", address()), ("moduleId", bytes32()),
            ("inputs", json!({"type": "array", "items": {"type": "string"}})), ("payment", decimal())]),
        ("JobMatched", vec![("id", decimal()), ("provider", address()), ("solver", address()), ("mediator", small(255)), ("price", decimal()),
            ("solverFee", decimal()), ("collateral", decimal())]),
        ("JobReleased", vec![("id", decimal()), ("provider", address()), ("penalty", decimal())]),
        ("ResultSubmitted", vec![("id", decimal()), ("provider", address()), ("dataId", json!({"type": "string"}))]),
        ("ResultChallenged", vec![("id", decimal()), ("challenger", address()), ("mediator", small(255))]),
        ("JobSettled", vec![("id", decimal()), ("provider", address()), ("price", decimal()), ("solverFee", decimal()), ("refund", decimal())]),
        ("ChallengeRuled", vec![("id", decimal()), ("mediator", address()), ("upheld", json!({"type": "boolean"})), ("correctDataId", json!({"type": "string"}))]),
        ("JobCancelled", vec![("id", decimal()), ("by", address())]),
        ("JobExpired", vec![("id", decimal())]),
        ("ResultTimedOut", vec![("id", decimal()), ("provider", address()), ("slashed", decimal())]),
        ("MediationTimedOut", vec![("id", decimal()), ("mediator", small(255))]),
        ("ModuleRuledNondeterministic", vec![("id", decimal()), ("moduleId", bytes32()), ("mediator", address())]),
        ("CallbackFailed", vec![("id", decimal()), ("client", address())]),
        ("Deposited", vec![("account", address()), ("from", address()), ("amount", decimal())]),
        ("Withdrew", vec![("account", address()), ("to", address()), ("amount", decimal())]),
        ("ClientAuthorized", vec![("payee", address()), ("client", address()), ("allowance", json!({"type": "object", "additionalProperties": false,
            "required": ["remaining", "maxPayment", "minChallengeWindow"],
            "properties": {"remaining": decimal(), "maxPayment": decimal(), "minChallengeWindow": small(u32::MAX.into())}}))]),
        ("RolesChanged", vec![("account", address()), ("roles", small(255))]),
        ("ProviderMediatorsSet", vec![("provider", address()), ("mediators", decimal())]),
        ("ResourcesSet", vec![("provider", address()), ("resources", resources)]),
        ("OfferSet", vec![("provider", address()), ("moduleId", bytes32()), ("price", decimal()), ("active", json!({"type": "boolean"})),
            ("minRunTimeout", small(u32::MAX.into())), ("maxRunTimeout", small(u32::MAX.into())), ("maxCallbackGas", small(u32::MAX.into()))]),
        ("ModulesAnnounced", vec![("provider", address()), ("moduleIds", json!({"type": "array", "items": bytes32()})), ("ready", json!({"type": "boolean"}))]),
        ("EndpointsAnnounced", vec![("provider", address()), ("endpoints", json!({"type": "array", "maxItems": 4, "items": {"type": "string", "maxLength": 256}}))]),
        ("MediatorRegistered", vec![("mediator", address()), ("index", small(255))]),
        ("MediatorActiveSet", vec![("index", small(255)), ("active", json!({"type": "boolean"}))]),
        ("MediatorApproved", vec![("account", address()), ("approved", json!({"type": "boolean"}))]),
        ("MediatorSuspended", vec![("index", small(255)), ("suspended", json!({"type": "boolean"}))]),
        ("DefaultMediatorsSet", vec![("mediators", decimal())]),
        ("ModulePublished", vec![("moduleId", bytes32()), ("name", json!({"type": "string"})), ("version", json!({"type": "string"})), ("publisher", address()),
            ("defaultPayment", decimal()), ("runTimeout", small(u32::MAX.into()))]),
        ("ModuleNameTransferred", vec![("nameHash", bytes32()), ("name", json!({"type": "string"})), ("from", address()), ("to", address())]),
        ("OwnershipTransferred", vec![("oldOwner", address()), ("newOwner", address())]),
        ("OwnershipHandoverRequested", vec![("pendingOwner", address())]),
        ("OwnershipHandoverCanceled", vec![("pendingOwner", address())]),
    ]
}

/// The fields the document gives market event `name` besides `type`, `block`, `logIndex` and
/// `tx`, in order; `None` for an event it does not describe.
pub fn market_event_fields(name: &str) -> Option<Vec<&'static str>> {
    market_events().into_iter().find(|(n, _)| *n == name).map(|(_, f)| f.into_iter().map(|(k, _)| k).collect())
}

/// The names of the market events the document describes.
pub fn market_event_names() -> Vec<&'static str> {
    market_events().into_iter().map(|(n, _)| n).collect()
}

/// One market event, as the `market` events of `/api/v1/events` carry it: `type` (the
/// contract's event name), its fields (uints that may pass 2^53 as decimal strings), and where
/// it was logged (`block`, `logIndex`, `tx`).
fn market_event() -> Value {
    let branches: Vec<Value> = market_events()
        .into_iter()
        .map(|(name, fields)| {
            let mut props = Map::new();
            props.insert("type".into(), json!({"const": name}));
            let mut required = vec![json!("type")];
            for (k, v) in fields {
                required.push(json!(k));
                props.insert(k.into(), v);
            }
            for (k, v) in [("block", json!({"type": "integer", "minimum": 0})), ("logIndex", json!({"type": "integer", "minimum": 0})), ("tx", bytes32())] {
                required.push(json!(k));
                props.insert(k.into(), v);
            }
            json!({"title": name, "type": "object", "additionalProperties": false, "required": required, "properties": props})
        })
        .collect();
    json!({"description": "A market event: `type` is the contract's event name; amounts, job ids and mediator bitmasks are decimal strings; addresses are 0x-prefixed (checksummed), hashes and module ids 0x-prefixed lowercase hex",
           "oneOf": branches})
}

/// An SSE event named `event` whose `data` is JSON of `schema`.
fn sse_json(event: &str, schema: Value, description: &str) -> Value {
    json!({"type": "object", "description": description, "additionalProperties": false, "required": ["event", "data"], "properties": {
        "event": {"const": event},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": schema},
        "id": {"type": "string"}, "retry": {"type": "integer"}}})
}

fn market_stream_event() -> Value {
    json!({"description": "An event of /api/v1/events (keep-alive comments between them carry no event)", "oneOf": [
        sse_json("market", r("MarketEvent"), "A market event: first the recent ones (up to 2,000), then each as the gateway reads it"),
        sse_json("caught-up", json!({"type": "object", "maxProperties": 0}), "Sent once, after the recent events: what follows is live"),
    ]})
}

fn job_stream_event() -> Value {
    json!({"description": "An event of /api/v1/jobs/{id}/events (keep-alive comments between them carry no event)", "oneOf": [
        sse_json("job", r("JobDetail"), "The job as GET /api/v1/jobs/{id} gives it, each time it changes"),
        sse_json("end", json!({"type": "object", "additionalProperties": false, "required": ["id", "state"], "properties": {
            "id": {"type": "string"}, "state": r("JobState")}}), "The job is final (after its last `job` event); the stream ends"),
    ]})
}

/// OpenAI's chat.completion (not streamed).
fn chat_completion() -> Value {
    json!({"type": "object", "additionalProperties": false, "required": ["id", "object", "created", "model", "choices", "usage"], "properties": {
        "id": {"type": "string", "pattern": "^chatcmpl-"}, "object": {"const": "chat.completion"}, "created": {"type": "integer"}, "model": {"type": "string"}, "system_fingerprint": {"type": "null"},
        "choices": {"type": "array", "minItems": 1, "maxItems": 1, "items": {"type": "object", "additionalProperties": false, "required": ["index", "message", "finish_reason"], "properties": {
            "index": {"const": 0}, "message": {"type": "object", "additionalProperties": false, "required": ["role", "content"], "properties": {"role": {"const": "assistant"}, "content": {"type": "string"}, "refusal": {"type": "null"}}},
            "logprobs": {"type": "null"}, "finish_reason": {"enum": ["stop", "length"]}}}},
        "usage": {"$ref": "#/components/schemas/Usage"}}})
}

/// OpenAI's text_completion (not streamed).
fn completion() -> Value {
    json!({"type": "object", "additionalProperties": false, "required": ["id", "object", "created", "model", "choices", "usage"], "properties": {
        "id": {"type": "string", "pattern": "^cmpl-"}, "object": {"const": "text_completion"}, "created": {"type": "integer"}, "model": {"type": "string"}, "system_fingerprint": {"type": "null"},
        "choices": {"type": "array", "minItems": 1, "maxItems": 1, "items": {"type": "object", "additionalProperties": false, "required": ["index", "text", "finish_reason"], "properties": {
            "index": {"const": 0}, "text": {"type": "string"}, "logprobs": {"type": "null"}, "finish_reason": {"enum": ["stop", "length"]}}}},
        "usage": {"$ref": "#/components/schemas/Usage"}}})
}

fn usage() -> Value {
    json!({"type": "object", "additionalProperties": false, "required": ["prompt_tokens", "completion_tokens", "total_tokens"], "properties": {
        "prompt_tokens": {"type": "integer", "minimum": 0}, "completion_tokens": {"type": "integer", "minimum": 0}, "total_tokens": {"type": "integer", "minimum": 0}}})
}

fn finish_reason() -> Value {
    json!({"enum": ["stop", "length", null]})
}

fn chat_completion_chunk() -> Value {
    json!({"type": "object", "description": "OpenAI's chat.completion.chunk: first the role, then the answer in word-sized pieces, then an empty delta with finish_reason and usage",
        "additionalProperties": false, "required": ["id", "object", "created", "model", "choices"], "properties": {
        "id": {"type": "string", "pattern": "^chatcmpl-"}, "object": {"const": "chat.completion.chunk"}, "created": {"type": "integer"}, "model": {"type": "string"},
        "system_fingerprint": {"type": "null"},
        "choices": {"type": "array", "minItems": 1, "maxItems": 1, "items": {"type": "object", "additionalProperties": false, "required": ["index", "delta", "finish_reason"], "properties": {
            "index": {"const": 0},
            "delta": {"type": "object", "additionalProperties": false, "properties": {"role": {"const": "assistant"}, "content": {"type": "string"}}},
            "logprobs": {"type": "null"}, "finish_reason": finish_reason()}}},
        "usage": r("Usage")}})
}

fn completion_chunk() -> Value {
    json!({"type": "object", "description": "OpenAI's streamed text_completion: the answer in word-sized pieces, then an empty text with finish_reason and usage",
        "additionalProperties": false, "required": ["id", "object", "created", "model", "choices"], "properties": {
        "id": {"type": "string", "pattern": "^cmpl-"}, "object": {"const": "text_completion"}, "created": {"type": "integer"}, "model": {"type": "string"},
        "choices": {"type": "array", "minItems": 1, "maxItems": 1, "items": {"type": "object", "additionalProperties": false, "required": ["index", "text", "finish_reason"], "properties": {
            "index": {"const": 0}, "text": {"type": "string"}, "logprobs": {"type": "null"}, "finish_reason": finish_reason()}}},
        "usage": r("Usage")}})
}

/// OpenAI's stream: unnamed events of `chunk` JSON, an error if the job ended without an
/// answer, and `[DONE]` last.
fn openai_stream_event(chunk: &str) -> Value {
    let unnamed = |data: Value, description: &str| {
        json!({"type": "object", "description": description, "additionalProperties": false, "required": ["data"], "properties": {
            "data": data, "id": {"type": "string"}, "retry": {"type": "integer"}}})
    };
    json!({"description": "An event of an OpenAI stream (keep-alive comments while the job runs carry no event)", "oneOf": [
        unnamed(json!({"type": "string", "contentMediaType": "application/json", "contentSchema": r(chunk)}), "A piece of the answer"),
        unnamed(json!({"type": "string", "contentMediaType": "application/json", "contentSchema": r("OpenAiError")}), "The job ended without an answer (then [DONE])"),
        unnamed(json!({"const": "[DONE]"}), "The last event"),
    ]})
}

fn assistant_message() -> Value {
    json!({"type": "object", "additionalProperties": false, "required": ["role", "content"], "properties": {"role": {"const": "assistant"}, "content": {"type": "string"}}})
}

/// An Ollama part: `done: false` pieces (empty ones while the job runs), then one `done: true`
/// with the counts; or `{"error"}` if the job ended without an answer.
fn ollama_part(text: Value, text_field: &str) -> Value {
    let mut piece = Map::new();
    piece.insert("model".into(), json!({"type": "string"}));
    piece.insert("created_at".into(), json!({"type": "string", "format": "date-time"}));
    for (k, v) in text.as_object().cloned().unwrap_or_default() {
        piece.insert(k, v);
    }
    let mut last = piece.clone();
    piece.insert("done".into(), json!({"const": false}));
    last.insert("done".into(), json!({"const": true}));
    last.insert("done_reason".into(), json!({"enum": ["stop", "length"]}));
    for k in ["prompt_eval_count", "eval_count", "total_duration", "load_duration", "prompt_eval_duration", "eval_duration"] {
        last.insert(k.into(), json!({"type": "integer", "minimum": 0}));
    }
    let piece_required = json!(["model", "created_at", text_field, "done"]);
    let last_required: Vec<String> = last.keys().cloned().collect();
    json!({"description": "One NDJSON line (the whole answer when not streamed: the done one)", "oneOf": [
        {"title": "piece", "type": "object", "additionalProperties": false, "required": piece_required, "properties": piece},
        {"title": "done", "type": "object", "additionalProperties": false, "required": last_required, "properties": last},
        {"title": "error", "$ref": "#/components/schemas/OllamaError"},
    ]})
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn every_market_event_of_the_abi_is_described() {
        let abi: serde_json::Value = serde_json::from_str(include_str!("../../../bindings/abi/LilypadMarket.json")).unwrap();
        let abi = abi.get("abi").unwrap_or(&abi).as_array().unwrap().clone();
        let mut in_abi = BTreeSet::new();
        for e in abi.iter().filter(|e| e["type"] == "event") {
            in_abi.insert(e["name"].as_str().unwrap().to_string());
        }
        let described: BTreeSet<String> = super::market_event_names().into_iter().map(str::to_string).collect();
        assert_eq!(described, in_abi, "the document's market events and the ABI's");
    }
}
