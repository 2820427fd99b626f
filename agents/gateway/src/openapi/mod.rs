//! The OpenAPI 3.1 document of the API, served at `/api/v1/openapi.json`. A test compares its
//! paths and methods with the routes `api::router` registers; what the streams send is in
//! [`streams`].

pub mod streams;

use serde_json::{json, Value};

use crate::problem::Kind;

fn problem_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// A `text/event-stream` answer whose events are `item` (see [`streams`] on `x-itemSchema`).
fn sse_response(description: &str, item: &str) -> Value {
    json!({"description": description, "content": {"text/event-stream": sse_media(item)}})
}

fn sse_media(item: &str) -> Value {
    json!({"schema": {"type": "string"}, "x-itemSchema": {"$ref": format!("#/components/schemas/{item}")}})
}

fn ndjson_media(item: &str) -> Value {
    json!({"schema": {"type": "string"}, "x-itemSchema": {"$ref": format!("#/components/schemas/{item}")}})
}

/// The fields of a job; `required` are those every answer has.
fn job_schema(required: &[&str]) -> Value {
    json!({"type": "object", "additionalProperties": false, "required": required, "properties": {
        "id": {"type": "string", "pattern": "^gj_[0-9a-f]+$"},
        "onchainJobId": {"type": ["string", "null"], "description": "the job's number on chain (`lilypad job <n>`); null until created there"},
        "chainId": {"type": ["string", "null"], "deprecated": true, "description": "the same as onchainJobId (not the EVM chain id)"},
        "deployment": {"type": ["string", "null"], "description": "the market deployment the job was sent to, `<chain id>-<market address prefix>-<deployment block hash prefix>` (the name of the agents' state folders); null for a job recorded before the gateway kept it. Only jobs of the deployment the gateway serves now are listed, followed and settled"},
        "module": {"type": "string"},
        "inputs": {"type": "array", "items": {"type": "string"}}, "payment": {"type": "string", "pattern": "^(0|[1-9][0-9]*)$"},
        "state": {"$ref": "#/components/schemas/JobState"},
        "final": {"type": "boolean"}, "dataId": {"type": ["string", "null"]}, "error": {"type": ["string", "null"]},
        "provider": {"type": ["string", "null"], "description": "the provider the job is matched with (0x...); its announced endpoints are where the gateway fetches the outputs first"},
        "createdAt": {"type": "integer"}, "updatedAt": {"type": "integer"},
        "events": {"type": "array", "items": {"type": "object", "additionalProperties": false, "required": ["state", "detail", "block", "at"], "properties": {
            "state": {"$ref": "#/components/schemas/JobState"}, "detail": {"type": "string"}, "block": {"type": ["integer", "null"]}, "at": {"type": "integer"}}}},
        "outputsReady": {"type": "boolean"},
        "result": {"type": "object", "additionalProperties": false, "required": ["stdout", "stderr", "exitCode", "outputs", "text"], "description": "once outputsReady",
            "properties": {"stdout": {"type": ["string", "null"], "description": "null when over 64 KiB"}, "stderr": {"type": ["string", "null"]}, "exitCode": {"type": ["integer", "null"]},
                "outputs": {"type": "string", "description": "where to list the output files"},
                "text": {"type": ["string", "null"], "description": "an LLM module's answer (`response`, or `message.content`, of its outputs/response.json); null for other modules"}}}}})
}

fn id_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The gateway's job id (gj_...)"})
}

/// The upload endpoints and the trustless gateway over the uploads ([`crate::upload_api`]).
fn upload_paths(secured: &Value, auth_errors: impl Fn(Value) -> Value) -> Value {
    let ipfs_responses = |not_found: &str| {
        json!({"200": {"description": "The block, CAR, file or listing"}, "304": {"description": "Not modified (If-None-Match)"}, "400": {"description": "Malformed CID or query"},
            "404": {"description": not_found}, "406": {"description": "A format not served"}, "412": {"description": "only-if-cached without the block"}, "501": {"description": "Content this gateway cannot deserialize"}})
    };
    let cid_param = json!({"name": "cid", "in": "path", "required": true, "schema": {"type": "string"}});
    let create = json!({"summary": "Upload a file, or a folder as a tar archive, for a job's file or folder input (`\"type\": \"cid\"`): imported as UnixFS (the CID `ipfs add --cid-version=1` and `lilypad run -i Name=@path` give), charged per MiB, kept for the gateway's retention period, served at /ipfs/<cid> and put on the gateway's IPFS node for providers. Give the returned cid as the input's value in POST /api/v1/jobs",
        "operationId": "createUpload", "security": secured,
        "requestBody": {"required": true, "description": "A file's bytes (application/octet-stream), or an uncompressed tar of a folder's contents (application/x-tar; e.g. `tar -C <folder> -cf - .`): regular files and folders only, relative paths. At most the gateway's --max-upload bytes",
            "content": {"application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}},
                        "application/x-tar": {"schema": {"type": "string", "contentMediaType": "application/x-tar"}}}}});
    let created = json!({
        "201": json_response("Stored and charged (see Location: /ipfs/<cid>)", json!({"$ref": "#/components/schemas/Upload"})),
        "400": problem_response("The body was cut short (nothing charged)"),
        "402": problem_response("Not enough credit for the upload's price (nothing stored)"),
        "413": problem_response("Over the gateway's upload size limit (nothing charged or stored)"),
        "415": problem_response("Neither application/octet-stream nor application/x-tar"),
        "422": problem_response("A malformed tar archive, or one with links, devices, absolute or `..` paths (nothing charged)"),
        "503": problem_response("The gateway's IPFS node did not take it (the charge refunded)")
    });
    let mut create = create;
    create["responses"] = auth_errors(created);
    let listed = json!({"400": problem_response("limit out of range"),
        "200": json_response("Uploads", json!({"type": "object", "additionalProperties": false, "required": ["uploads"], "properties": {"uploads": {"type": "array", "items": {"$ref": "#/components/schemas/Upload"}}}}))});
    let list = json!({"summary": "The account's uploads, newest first", "operationId": "listUploads", "security": secured,
        "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}}],
        "responses": auth_errors(listed)});
    json!({
        "/api/v1/uploads": {"post": create, "get": list},
        "/ipfs/{cid}": {"get": {"summary": "IPFS trustless gateway over the uploads (no key: content is addressed by its hash): `?format=raw` or `?format=car` (or the matching Accept types), `dag-scope`; a file's bytes or a folder's listing without a format",
            "operationId": "ipfsGet", "tags": ["IPFS"], "parameters": [cid_param.clone()], "responses": ipfs_responses("Not stored here")}},
        "/ipfs/{cid}/{path}": {"get": {"summary": "A path inside an uploaded folder, as /ipfs/{cid}",
            "operationId": "ipfsGetPath", "tags": ["IPFS"], "parameters": [cid_param, {"name": "path", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": ipfs_responses("Not stored here, or no such path")}}
    })
}

/// The schema of an upload.
fn upload_schema() -> Value {
    json!({"type": "object", "additionalProperties": false, "required": ["id", "cid", "kind", "bytes", "price", "state", "createdAt", "expiresAt", "url"], "properties": {
        "id": {"type": "string", "pattern": "^up_[0-9a-f]+$"},
        "cid": {"type": "string", "description": "the root CID (CIDv1): give it as a `cid` input's value"},
        "kind": {"enum": ["file", "folder"]},
        "bytes": {"type": "integer", "minimum": 0, "description": "bytes of the request body, what the price is for"},
        "price": {"type": "string", "pattern": "^(0|[1-9][0-9]*)$", "description": "charged, token base units: the gateway's price per MiB, pro rata, rounded up"},
        "state": {"enum": ["stored", "failed", "expired"], "description": "failed: refunded; expired: past the retention period, removed from this gateway"},
        "createdAt": {"type": "integer"}, "expiresAt": {"type": "integer", "description": "Unix ms after which it is removed from this gateway"},
        "url": {"type": "string", "description": "/ipfs/<cid> on this gateway"}}})
}

/// The document.
pub fn document() -> Value {
    let secured = json!([{"apiKey": []}]);
    let auth_errors = |mut responses: Value| {
        responses["401"] = problem_response("Missing, unknown or revoked API key");
        responses["429"] = problem_response("Rate limited (see Retry-After)");
        responses
    };
    let openai_errors = |mut responses: Value| {
        for (status, what) in [("400", "Malformed request"), ("401", "Missing, unknown or revoked API key"), ("402", "Not enough credit (code insufficient_quota)"),
                               ("404", "Unknown model (code model_not_found)"), ("413", "Body too large"), ("429", "Rate limited (see Retry-After)"), ("500", "The job ended without an answer"), ("503", "The chain cannot be reached")] {
            responses[status] = json_response(what, json!({"$ref": "#/components/schemas/OpenAiError"}));
        }
        responses
    };
    let ollama_errors = |mut responses: Value| {
        for (status, what) in [("400", "Malformed request"), ("401", "Missing, unknown or revoked API key"), ("402", "Not enough credit"),
                               ("404", "Unknown model"), ("413", "Body too large"), ("429", "Rate limited (see Retry-After)"), ("500", "The job ended without an answer"), ("503", "The chain cannot be reached")] {
            responses[status] = json_response(what, json!({"$ref": "#/components/schemas/OllamaError"}));
        }
        responses
    };
    let message = json!({"type": "object", "required": ["role", "content"], "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant"]},
        "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object", "required": ["type", "text"], "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}}]}}});
    let ollama_options = json!({"type": "object", "description": "Passed to the module's inputs of the same meaning where it declares them (MaxTokens, Temperature, TopP, TopK, Seed)", "properties": {
        "num_predict": {"type": ["integer", "null"], "minimum": 1}, "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2}, "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "top_k": {"type": ["integer", "null"], "minimum": 0}, "seed": {"type": ["integer", "null"], "minimum": 0}}});
    let problem_types: Vec<Value> = Kind::ALL.iter().map(|k| json!(k.type_uri())).collect();
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Lilypad gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Run Lilypad modules over HTTP without a wallet: the gateway pays on chain from its own key and charges the account's prepaid credit. Amounts are token base units as decimal strings. Errors are application/problem+json (RFC 9457)."
        },
        "servers": [{"url": "/"}],
        "paths": {
            "/": {"get": {"summary": "The dashboard (HTML)", "operationId": "dashboard",
                "responses": {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
            "/api/v1/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                "responses": {"200": json_response("OpenAPI 3.1", json!({"type": "object"}))}}},
            "/api/v1/jobs": {
                "post": {"summary": "Run a module: validated, charged, submitted on chain", "operationId": "createJob", "security": secured,
                    "parameters": [{"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "maxLength": 200},
                        "description": "Retrying with the same key returns the first job instead of running (and charging) again"}],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}}}},
                    "responses": auth_errors(json!({
                        "201": json_response("Job created", json!({"$ref": "#/components/schemas/JobDetail"})),
                        "200": json_response("The job already created with this idempotency key", json!({"$ref": "#/components/schemas/JobDetail"})),
                        "400": problem_response("Malformed body"),
                        "402": problem_response("Not enough credit"),
                        "413": problem_response("Body too large"),
                        "415": problem_response("Body is not JSON"),
                        "422": problem_response("Unknown module, bad module reference or bad inputs"),
                        "503": problem_response("The chain cannot be reached")
                    }))},
                "get": {"summary": "The account's jobs, newest first", "operationId": "listJobs", "security": secured,
                    "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}}],
                    "responses": auth_errors(json!({"400": problem_response("limit out of range"), "200": json_response("Jobs of the deployment the gateway serves", json!({"type": "object", "additionalProperties": false, "required": ["jobs"], "properties": {"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}}}))}))}
            },
            "/api/v1/jobs/{id}": {"get": {"summary": "A job: state, events, result", "operationId": "getJob", "security": secured, "parameters": [id_param()],
                "responses": auth_errors(json!({"200": json_response("The job", json!({"$ref": "#/components/schemas/JobDetail"})), "404": problem_response("No such job")}))}},
            "/api/v1/jobs/{id}/events": {"get": {"summary": "Server-Sent Events: the job each time it changes (event `job`), until final (event `end`); each event is a JobStreamEvent", "operationId": "jobEvents",
                "security": secured, "parameters": [id_param()],
                "responses": auth_errors(json!({"200": sse_response("Event stream", "JobStreamEvent"), "404": problem_response("No such job")}))}},
            "/api/v1/jobs/{id}/outputs": {"get": {"summary": "The job's output files (fetched from the provider and verified against the CID)", "operationId": "listOutputs",
                "security": secured, "parameters": [id_param()],
                "responses": auth_errors(json!({"200": json_response("Files", json!({"type": "object"})), "404": problem_response("No such job"), "409": problem_response("Not available yet")}))}},
            "/api/v1/jobs/{id}/outputs/{path}": {"get": {"summary": "One output file (stdout, stderr, exitCode, outputs/...)", "operationId": "getOutput",
                "security": secured, "parameters": [id_param(), {"name": "path", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": auth_errors(json!({"200": {"description": "The file's bytes"}, "404": problem_response("No such job or file"), "409": problem_response("Not available yet")}))}},
            "/api/v1/modules": {"get": {"summary": "Modules published on chain, with prices, offers and (where the gateway has the module) inputs", "operationId": "listModules",
                "responses": {"200": json_response("Modules", json!({"type": "object"}))}}},
            "/api/v1/account": {"get": {"summary": "The account of the key: balance", "operationId": "getAccount", "security": secured,
                "responses": auth_errors(json!({"200": json_response("Account", json!({"$ref": "#/components/schemas/Account"}))}))}},
            "/api/v1/account/ledger": {"get": {"summary": "Credit history, newest first", "operationId": "getLedger", "security": secured,
                "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
                "responses": auth_errors(json!({"400": problem_response("limit out of range"), "200": json_response("Ledger", json!({"type": "object"}))}))}},
            "/api/v1/events": {"get": {"summary": "Server-Sent Events: the market's events (event `market`), recent ones first, then `caught-up`, then live; each event is a MarketStreamEvent", "operationId": "marketEvents",
                "responses": {"200": sse_response("Event stream", "MarketStreamEvent"), "429": problem_response("Too many open event streams (see Retry-After)")}}},
            "/v1/chat/completions": {"post": {"summary": "OpenAI chat completion: one job of an LLM module (see /v1/models); `stream: true` sends the answer as `chat.completion.chunk` events once the job's result is fetched, then `data: [DONE]`",
                "operationId": "openaiChatCompletions", "tags": ["OpenAI"], "security": secured,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OpenAiChatRequest"}}}},
                "responses": openai_errors(json!({"200": {"description": "The answer (chat.completion), or with stream: true the chunks",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletion"}}, "text/event-stream": sse_media("ChatCompletionStreamEvent")}}}))}},
            "/v1/completions": {"post": {"summary": "OpenAI text completion: the prompt as one user turn of the module's chat template",
                "operationId": "openaiCompletions", "tags": ["OpenAI"], "security": secured,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OpenAiCompletionRequest"}}}},
                "responses": openai_errors(json!({"200": {"description": "The answer (text_completion), or with stream: true the chunks",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Completion"}}, "text/event-stream": sse_media("CompletionStreamEvent")}}}))}},
            "/v1/models": {"get": {"summary": "OpenAI model list: the LLM modules published on chain that this gateway runs", "operationId": "openaiModels", "tags": ["OpenAI"], "security": secured,
                "responses": openai_errors(json!({"200": json_response("Models", json!({"type": "object", "required": ["object", "data"], "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {"type": "object", "required": ["id", "object"]}}}}))}))}},
            "/api/generate": {"post": {"summary": "Ollama generate: one job of an LLM module (see /api/tags); streamed (the default) as NDJSON once the job's result is fetched",
                "operationId": "ollamaGenerate", "tags": ["Ollama"], "security": secured,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OllamaGenerateRequest"}}}},
                "responses": ollama_errors(json!({"200": {"description": "The answer, or with stream (the default) NDJSON parts",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OllamaGeneratePart"}}, "application/x-ndjson": ndjson_media("OllamaGeneratePart")}}}))}},
            "/api/chat": {"post": {"summary": "Ollama chat: one job of an LLM module; streamed (the default) as NDJSON",
                "operationId": "ollamaChat", "tags": ["Ollama"], "security": secured,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OllamaChatRequest"}}}},
                "responses": ollama_errors(json!({"200": {"description": "The answer, or with stream (the default) NDJSON parts",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OllamaChatPart"}}, "application/x-ndjson": ndjson_media("OllamaChatPart")}}}))}},
            "/api/tags": {"get": {"summary": "Ollama model list: the LLM modules published on chain that this gateway runs", "operationId": "ollamaTags", "tags": ["Ollama"], "security": secured,
                "responses": ollama_errors(json!({"200": json_response("Models", json!({"type": "object", "required": ["models"], "properties": {"models": {"type": "array", "items": {"type": "object", "required": ["name", "model"]}}}}))}))}}
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "lpk_<id>_<secret>, from `lilypad gateway keys create`"}},
            "schemas": {
                "JobRequest": {"type": "object", "required": ["module"], "additionalProperties": false, "properties": {
                    "module": {"type": "string", "examples": ["lilysay:0.1.0"]},
                    "inputs": {"description": "Leave out for the module's defaults", "oneOf": [
                        {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]{0,63}=[^\\u0000]*$", "description": "Key=Value"}},
                        {"type": "object", "minProperties": 1, "propertyNames": {"pattern": "^[A-Za-z][A-Za-z0-9_]{0,63}$"},
                         "additionalProperties": {"type": ["string", "number", "boolean"]}}]},
                    "idempotencyKey": {"type": "string", "maxLength": 200}}},
                "OpenAiChatRequest": {"type": "object", "required": ["model", "messages"], "properties": {
                    "model": {"type": "string", "examples": ["ollama-pipeline:smollm2-135m"]},
                    "messages": {"type": "array", "minItems": 1, "items": message},
                    "stream": {"type": ["boolean", "null"]}, "max_tokens": {"type": ["integer", "null"], "minimum": 1}, "max_completion_tokens": {"type": ["integer", "null"], "minimum": 1},
                    "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2}, "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1}, "seed": {"type": ["integer", "null"], "minimum": 0},
                    "n": {"enum": [1, null]}}},
                "OpenAiCompletionRequest": {"type": "object", "required": ["model", "prompt"], "properties": {
                    "model": {"type": "string"},
                    "prompt": {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "maxItems": 1, "items": {"type": "string"}}]},
                    "stream": {"type": ["boolean", "null"]}, "max_tokens": {"type": ["integer", "null"], "minimum": 1},
                    "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2}, "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1}, "seed": {"type": ["integer", "null"], "minimum": 0},
                    "n": {"enum": [1, null]}}},
                "OpenAiError": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["message", "type"], "properties": {
                    "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}},
                "OllamaGenerateRequest": {"type": "object", "required": ["model", "prompt"], "properties": {
                    "model": {"type": "string"}, "prompt": {"type": "string"}, "system": {"type": ["string", "null"]}, "stream": {"type": ["boolean", "null"]}, "options": {"oneOf": [ollama_options, {"type": "null"}]}}},
                "OllamaChatRequest": {"type": "object", "required": ["model", "messages"], "properties": {
                    "model": {"type": "string"}, "messages": {"type": "array", "minItems": 1, "items": message}, "stream": {"type": ["boolean", "null"]}, "options": {"oneOf": [ollama_options, {"type": "null"}]}}},
                "OllamaError": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "Account": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "balance": {"type": "string"}, "keyId": {"type": "string"}}},
                "Problem": {"type": "object", "required": ["type", "title", "status", "detail"], "properties": {
                    "type": {"type": "string", "format": "uri", "enum": problem_types},
                    "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"}}}
            }
        }
    });
    if let (Some(paths), Value::Object(more)) = (doc["paths"].as_object_mut(), upload_paths(&secured, auth_errors)) {
        paths.extend(more);
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        schemas.insert("Upload".into(), upload_schema());
        schemas.insert("Job".into(), job_schema(&["id", "onchainJobId", "chainId", "deployment", "module", "inputs", "payment", "state", "final", "dataId", "error", "provider", "createdAt", "updatedAt"]));
        schemas.insert(
            "JobDetail".into(),
            job_schema(&["id", "onchainJobId", "chainId", "deployment", "module", "inputs", "payment", "state", "final", "dataId", "error", "provider", "createdAt", "updatedAt", "events", "outputsReady"]),
        );
        schemas.insert("JobState".into(), json!({"enum": crate::db::STATES}));
        schemas.extend(streams::components());
    }
    doc
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// (METHOD, path) of every `.route(...)` in api.rs, with `{*rest}` written `{rest}` as
    /// OpenAPI does.
    fn routes_in_code() -> BTreeSet<(String, String)> {
        let src = include_str!("../api.rs");
        let mut out = BTreeSet::new();
        for piece in src.split(".route(\"").skip(1) {
            let (path, rest) = piece.split_once('"').expect("a quoted path");
            let call = rest.split_once(")\n").map(|(c, _)| c).unwrap_or(rest);
            let path = path.replace("{*", "{");
            for method in ["get", "post", "put", "delete", "patch"] {
                if call.contains(&format!("{method}(")) {
                    out.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    fn routes_in_document() -> BTreeSet<(String, String)> {
        let doc = super::document();
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    #[test]
    fn the_document_lists_exactly_the_routes_the_router_serves() {
        let code = routes_in_code();
        assert!(code.len() >= 10, "the route parser found too few routes: {code:?}");
        assert!(code.contains(&("POST".into(), "/api/v1/jobs".into())));
        let doc = routes_in_document();
        let missing: Vec<_> = code.difference(&doc).collect();
        let stale: Vec<_> = doc.difference(&code).collect();
        assert!(missing.is_empty() && stale.is_empty(), "served but not documented: {missing:?}; documented but not served: {stale:?}");
    }

    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r.to_string());
                }
                m.values().for_each(|x| refs(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_and_every_stream_documents_its_items() {
        let doc = super::document();
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in &all {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r} is not a component schema"));
            assert!(doc["components"]["schemas"].get(name).is_some(), "{r} does not resolve");
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for media in ["text/event-stream", "application/x-ndjson"] {
                    if let Some(content) = op["responses"]["200"]["content"].get(media) {
                        assert!(content["x-itemSchema"]["$ref"].is_string(), "{method} {path}: {media} without x-itemSchema");
                    }
                }
            }
        }
    }

    #[test]
    fn every_problem_type_is_documented_and_distinct() {
        let doc = super::document();
        let types = doc["components"]["schemas"]["Problem"]["properties"]["type"]["enum"].as_array().unwrap().clone();
        let unique: BTreeSet<String> = types.iter().map(|t| t.as_str().unwrap().to_string()).collect();
        assert_eq!(unique.len(), crate::problem::Kind::ALL.len());
        assert!(unique.iter().all(|t| t.starts_with(crate::problem::BASE)));
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
