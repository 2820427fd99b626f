"""Every item of the gateway's streams, read from a real gateway, against the item schemas of its
own OpenAPI document (`x-itemSchema` of each streamed media type, with OpenAPI 3.2's meaning:
an SSE event is an object {event, data, id, retry} whose JSON `data` gives its schema in
`contentSchema`; an NDJSON line is one JSON value).

Run by agents/cli/tests/gateway_compat.rs with GATEWAY (the gateway's URL), KEY (a key with
credit for a lilysay job and, with MODEL, six LLM jobs) and MODEL (an LLM module, name:version;
empty: the LLM streams are not checked). Checks:
- /api/v1/events: the backlog, `caught-up`, then the live events of a lilysay job until it
  settles;
- /api/v1/jobs/{id}/events: that job, from creation to `end`;
- with MODEL: OpenAI's chat and completion streams, Ollama's generate and chat NDJSON, and the
  non-streamed chat and generate answers.
Prints one line per check; exits non-zero on the first failure.
"""

import json
import os
import sys
import threading
import time
import urllib.request

import jsonschema

GATEWAY = os.environ["GATEWAY"]
KEY = os.environ["KEY"]
MODEL = os.environ.get("MODEL", "")
DEADLINE = time.monotonic() + float(os.environ.get("STREAMS_TIMEOUT", "420"))


def fail(what):
    print(f"FAILED: {what}", file=sys.stderr, flush=True)
    os._exit(1)


def check(cond, what):
    if not cond:
        fail(what)


def ok(what):
    print(f"ok: {what}", flush=True)


def request(method, path, body=None, key=True, timeout=600):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if key:
        headers["Authorization"] = f"Bearer {KEY}"
    data = json.dumps(body).encode() if body is not None else None
    return urllib.request.urlopen(urllib.request.Request(f"{GATEWAY}{path}", data=data, headers=headers, method=method), timeout=timeout)


DOC = json.load(request("GET", "/api/v1/openapi.json", key=False))


def schema(ref_or_schema):
    """A validator of `ref_or_schema` whose `#/components/...` references resolve in DOC."""
    s = dict(ref_or_schema)
    s["components"] = DOC["components"]
    return jsonschema.Draft202012Validator(s)


def deref(s):
    while "$ref" in s:
        name = s["$ref"].removeprefix("#/components/schemas/")
        s = DOC["components"]["schemas"][name]
    return s


def item_schema(path, method, media):
    content = DOC["paths"][path][method]["responses"]["200"]["content"][media]
    check("x-itemSchema" in content, f"{method.upper()} {path} documents its {media} items (x-itemSchema)")
    return content["x-itemSchema"]


def errors(validator, value):
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(value)]


def check_sse_item(item, item_s, where):
    """Exactly one branch of the item schema matches: its own keywords on the item, then each
    field's contentSchema on that field decoded (OpenAPI 3.2's SSE items)."""
    branches = deref(item_s).get("oneOf") or [item_s]
    matched, why = [], []
    for b in branches:
        b = deref(b)
        e = errors(schema(b), item)
        for field, fs in b.get("properties", {}).items():
            if e or "contentSchema" not in fs or field not in item:
                continue
            try:
                decoded = json.loads(item[field])
            except ValueError as x:
                e = [f"{field} is not JSON: {x}"]
                continue
            e = errors(schema(fs["contentSchema"]), decoded)
        (why if e else matched).append((b.get("description") or b.get("title") or "?", e))
    check(len(matched) == 1, f"{where}: {item!r} matches {len(matched)} of the documented events, not one: {why or matched}")


def sse_items(response):
    """The SSE items of a response: {event?, data, id?, retry?}; comments skipped."""
    item, data = {}, []
    for raw in response:
        line = raw.decode("utf-8").rstrip("\r\n")
        if line == "":
            if data or item:
                item["data"] = "\n".join(data)
                yield item
            item, data = {}, []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field in ("event", "id"):
            item[field] = value
        elif field == "retry":
            item[field] = int(value)


def ndjson_lines(response):
    for raw in response:
        if raw.strip():
            yield json.loads(raw)


# ---------------------------------------------------------------- /api/v1/events and a job's events
market_s = item_schema("/api/v1/events", "get", "text/event-stream")
job_s = item_schema("/api/v1/jobs/{id}/events", "get", "text/event-stream")
market = {"items": 0, "types": set(), "caught_up": 0, "settled": threading.Event(), "chain_id": None, "error": None}


def follow_market():
    try:
        with request("GET", "/api/v1/events", key=False, timeout=60) as r:
            check(r.headers["content-type"].startswith("text/event-stream"), f"content type {r.headers['content-type']}")
            for item in sse_items(r):
                check_sse_item(item, market_s, "/api/v1/events")
                market["items"] += 1
                if item.get("event") == "caught-up":
                    market["caught_up"] += 1
                    continue
                e = json.loads(item["data"])
                market["types"].add(e["type"])
                if e["type"] == "JobSettled" and market["chain_id"] is not None and e["id"] == market["chain_id"]:
                    market["settled"].set()
                    return
                if time.monotonic() > DEADLINE:
                    return
    except Exception as x:  # noqa: BLE001 - reported by the main thread
        market["error"] = repr(x)
        market["settled"].set()


watcher = threading.Thread(target=follow_market, daemon=True)
watcher.start()

job = json.load(request("POST", "/api/v1/jobs", {"module": "lilysay:0.1.0", "inputs": {"Message": "streams match their schemas"}}))
check(job.get("onchainJobId"), f"the job is on chain: {job}")
market["chain_id"] = job["onchainJobId"]
events = []
with request("GET", f"/api/v1/jobs/{job['id']}/events", timeout=60) as r:
    for item in sse_items(r):
        check_sse_item(item, job_s, "/api/v1/jobs/{id}/events")
        events.append(item)
        if item.get("event") == "end":
            break
        check(time.monotonic() < DEADLINE, "the job's stream did not end in time")
names = [e.get("event") for e in events]
check(names[-1] == "end" and names.count("end") == 1 and names.count("job") >= 2, f"job events then one end: {names}")
last_job, end = json.loads(events[-2]["data"]), json.loads(events[-1]["data"])
check(end == {"id": job["id"], "state": last_job["state"]} and last_job["final"], f"end names the job and its final state: {end} after {last_job['state']}")
check("result" not in last_job or last_job["result"]["text"] is None, f"lilysay has no LLM answer: {last_job.get('result')}")
ok(f"/api/v1/jobs/{{id}}/events: {len(events)} events ({names.count('job')} job, then end: {end['state']}) match JobStreamEvent")

check(market["settled"].wait(max(1.0, DEADLINE - time.monotonic())), "the market stream showed the job settle")
check(market["error"] is None, f"the market stream: {market['error']}")
check(market["caught_up"] == 1, f"one caught-up event: {market['caught_up']}")
wanted = {"ModulePublished", "OfferSet", "JobCreated", "JobMatched", "ResultSubmitted", "JobSettled"}
check(wanted <= market["types"], f"the market stream showed {sorted(market['types'])}, not all of {sorted(wanted)}")
ok(f"/api/v1/events: {market['items']} events of {len(market['types'])} types match MarketStreamEvent: {sorted(market['types'])}")

if not MODEL:
    print("all stream checks passed (no LLM model given)")
    sys.exit(0)

# ---------------------------------------------------------------- the LLM streams
SHORT = "Say hi."


def openai_stream(path, body, item_name):
    item_s = item_schema(path, "post", "text/event-stream")
    with request("POST", path, body) as r:
        check(r.headers["content-type"].startswith("text/event-stream"), f"{path}: content type {r.headers['content-type']}")
        items = list(sse_items(r))
    for item in items:
        check_sse_item(item, item_s, path)
    check(items and items[-1]["data"] == "[DONE]", f"{path}: ends with [DONE]: {items[-3:]}")
    chunks = [json.loads(i["data"]) for i in items[:-1]]
    check(chunks and all("error" not in c for c in chunks), f"{path}: an answer: {chunks}")
    check(chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length") and "usage" in chunks[-1], f"{path}: the last chunk finishes: {chunks[-1]}")
    ok(f"{path} stream: {len(items)} events match {item_name}")


def ollama_stream(path, body, item_name):
    item_s = schema(item_schema(path, "post", "application/x-ndjson"))
    with request("POST", path, body) as r:
        check(r.headers["content-type"].startswith("application/x-ndjson"), f"{path}: content type {r.headers['content-type']}")
        parts = list(ndjson_lines(r))
    for p in parts:
        e = errors(item_s, p)
        check(not e, f"{path}: {p!r} is not an {item_name}: {e}")
    check(parts and parts[-1].get("done") is True and all(p.get("done") is False for p in parts[:-1]), f"{path}: parts then one done: {parts[-2:]}")
    ok(f"{path} NDJSON: {len(parts)} lines match {item_name}")


def plain(path, body, name):
    with request("POST", path, body) as r:
        check(r.headers["content-type"].startswith("application/json"), f"{path}: content type {r.headers['content-type']}")
        answer = json.load(r)
    s = DOC["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    e = errors(schema(s), answer)
    check(not e, f"{path}: {answer!r} is not a {name}: {e}")
    ok(f"{path}: the answer matches {name}")
    return answer


openai_stream("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": SHORT}], "max_tokens": 8, "stream": True}, "ChatCompletionStreamEvent")
openai_stream("/v1/completions", {"model": MODEL, "prompt": SHORT, "max_tokens": 8, "stream": True}, "CompletionStreamEvent")
ollama_stream("/api/generate", {"model": MODEL, "prompt": SHORT, "options": {"num_predict": 8}}, "OllamaGeneratePart")
ollama_stream("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": SHORT}], "options": {"num_predict": 8}}, "OllamaChatPart")
plain("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": SHORT}], "max_tokens": 8}, "ChatCompletion")
plain("/api/generate", {"model": MODEL, "prompt": SHORT, "options": {"num_predict": 8}, "stream": False}, "OllamaGeneratePart")
print("all stream checks passed")
