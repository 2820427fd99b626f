"""The official `openai` and `ollama` Python clients against a Lilypad gateway.

Run by agents/cli/tests/gateway_compat.rs with GATEWAY (the gateway's URL), KEY (a key with
credit for six LLM jobs), POOR_KEY (a key with less credit than one job costs) and MODEL (the
LLM module, name:version). Prints one line per check; exits non-zero on the first failure.
"""

import os
import sys

import ollama
import openai

GATEWAY = os.environ["GATEWAY"]
KEY = os.environ["KEY"]
POOR_KEY = os.environ["POOR_KEY"]
MODEL = os.environ["MODEL"]
QUESTION = "Name one colour of the sky."


def ok(what, detail=""):
    print(f"ok: {what} {detail}".rstrip(), flush=True)


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr, flush=True)
        sys.exit(1)


def openai_error(call, cls, status, code):
    try:
        call()
    except cls as e:
        check(e.status_code == status, f"status {e.status_code} != {status}: {e}")
        body = e.body if isinstance(e.body, dict) else {}
        check(body.get("code") == code, f"code {body.get('code')!r} != {code!r}: {e.body}")
        check(bool(body.get("message")), f"an error message: {e.body}")
        return e
    check(False, f"expected {cls.__name__}")


def ollama_error(call, status):
    try:
        call()
    except ollama.ResponseError as e:
        check(e.status_code == status, f"status {e.status_code} != {status}: {e.error}")
        check(len(e.error) > 10, f"an error message: {e.error!r}")
        return e
    check(False, f"expected ollama.ResponseError {status}")


# ---------------------------------------------------------------- openai
client = openai.OpenAI(base_url=f"{GATEWAY}/v1", api_key=KEY, max_retries=0, timeout=600)

ids = [m.id for m in client.models.list()]
check(MODEL in ids, f"{MODEL} in /v1/models: {ids}")
ok("openai models.list", str(ids))

chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTION}], max_tokens=24)
answer = chat.choices[0].message.content
check(chat.object == "chat.completion" and answer.strip(), f"a chat answer: {chat}")
check(chat.choices[0].finish_reason in ("stop", "length"), f"finish_reason: {chat}")
check(chat.usage.completion_tokens >= 1 and chat.usage.prompt_tokens >= 1, f"usage: {chat.usage}")
ok("openai chat.completions.create", repr(answer))

streamed = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTION}], max_tokens=24, stream=True)
chunks = list(streamed)
text = "".join(c.choices[0].delta.content or "" for c in chunks)
check(all(c.object == "chat.completion.chunk" for c in chunks), "chunk objects")
check(len(chunks) >= 3, f"the answer in several chunks: {len(chunks)}")
check(chunks[-1].choices[0].finish_reason in ("stop", "length"), f"the last chunk finishes: {chunks[-1]}")
check(text == answer, f"the same job gives the same answer, streamed or not: {text!r} != {answer!r}")
ok("openai chat stream", f"{len(chunks)} chunks")

completion = client.completions.create(model=MODEL, prompt=QUESTION, max_tokens=24)
check(completion.object == "text_completion" and completion.choices[0].text.strip(), f"a completion: {completion}")
ok("openai completions.create", repr(completion.choices[0].text))

bad = openai.OpenAI(base_url=f"{GATEWAY}/v1", api_key="lpk_000000000000_" + "0" * 64, max_retries=0)
openai_error(lambda: bad.models.list(), openai.AuthenticationError, 401, "invalid_api_key")
ok("openai bad key: 401 invalid_api_key")
openai_error(lambda: client.chat.completions.create(model="no-such-model:1", messages=[{"role": "user", "content": "hi"}]), openai.NotFoundError, 404, "model_not_found")
ok("openai unknown model: 404 model_not_found")
poor = openai.OpenAI(base_url=f"{GATEWAY}/v1", api_key=POOR_KEY, max_retries=0)
openai_error(lambda: poor.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}]), openai.APIStatusError, 402, "insufficient_quota")
ok("openai too little credit: 402 insufficient_quota")

# ---------------------------------------------------------------- ollama
oc = ollama.Client(host=GATEWAY, headers={"Authorization": f"Bearer {KEY}"})
names = [m.model for m in oc.list().models]
check(MODEL in names, f"{MODEL} in /api/tags: {names}")
ok("ollama list", str(names))

gen = oc.generate(model=MODEL, prompt=QUESTION, options={"num_predict": 24})
check(gen.done and gen.response.strip(), f"a generate answer: {gen}")

ok("ollama generate", repr(gen.response))

parts = list(oc.chat(model=MODEL, messages=[{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": QUESTION}], options={"num_predict": 24}, stream=True))
reply = "".join(p.message.content or "" for p in parts)
check(parts[-1].done and parts[-1].done_reason in ("stop", "length"), f"the last part is done: {parts[-1]}")
check(reply.strip() and len(parts) >= 2, f"a streamed chat answer in parts: {parts}")
ok("ollama chat stream", f"{len(parts)} parts: {reply!r}")

ollama_error(lambda: ollama.Client(host=GATEWAY, headers={"Authorization": "Bearer nope"}).list(), 401)
ok("ollama bad key: 401")
ollama_error(lambda: oc.chat(model="no-such-model:1", messages=[{"role": "user", "content": "hi"}]), 404)
ok("ollama unknown model: 404")
ollama_error(lambda: ollama.Client(host=GATEWAY, headers={"Authorization": f"Bearer {POOR_KEY}"}).generate(model=MODEL, prompt="hi"), 402)
ok("ollama too little credit: 402")
print("all client checks passed")
