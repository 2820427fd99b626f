//! The engine of the `ollama-pipeline` Lilypad module: a chat turn with SmolLM2-135M-Instruct
//! through llama.cpp (the `llama-cpp-2` bindings, CPU), written as Ollama's `/api/generate`
//! answer (for `--prompt`) or `/api/chat` answer (for `--messages`) to
//! `/outputs/response.json`. The command line is in `args::USAGE`.
//!
//! Same arguments, same bytes: stdout (the answer's text), stderr (empty) and response.json do
//! not change between runs (sampling is seeded) unless `--timings true` asks for the
//! measurements of this run (durations, wall-clock `created_at`, a `timings ...` line on stderr).

mod args;
mod chat;
mod response;
mod sampling;

use std::fmt;
use std::fs;
use std::io::Write;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use args::{Options, Parsed, Request, UsageError};
use chat::Piece;
use response::{json, ChatMessage, FIXED_CREATED_AT};
use sampling::Sampling;

/// The `model` field of response.json.
const MODEL_NAME: &str = "smollm2:135m";
/// The name in the benchmark line.
const BENCH_NAME: &str = "smollm2-135m";
/// `<|endoftext|>` and `<|im_end|>`: generation stops at either.
const STOP_TOKENS: [i32; 2] = [0, 2];
/// The benchmark's prompt and length: fixed, so numbers compare across machines.
const BENCH_PROMPT: &str = "What are some top spots to visit when in Vancouver, BC, Canada";
const BENCH_TOKENS: u32 = 128;
const BENCH_RUNS: usize = 3;
/// llama.cpp's `LLAMA_FLASH_ATTN_TYPE_DISABLED`. Its default ("auto") turns flash attention on
/// for the CPU, whose kernel splits the cached keys among the threads and sums the parts in an
/// order that depends on their number: the logits then differ in the last bits between 1 and 2
/// threads, and a seeded draw picks another token sooner or later (the Vancouver prompt's
/// answers parted at the 218th token). Without it the answer is the same bytes at any thread
/// count, so a mediator with another number of CPUs gets the provider's result.
const FLASH_ATTN_DISABLED: i32 = 0;

#[derive(Debug)]
enum Error {
    Usage(String),
    ModelMissing(PathBuf),
    Model(String),
    PromptTooLong { tokens: usize, context: u32 },
    Inference(String),
    Output(PathBuf, std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "{m}"),
            Error::ModelMissing(p) => write!(f, "model file {} not found (is it in the image?)", p.display()),
            Error::Model(m) => write!(f, "cannot load the model: {m}"),
            Error::PromptTooLong { tokens, context } => write!(
                f,
                "the prompt is {tokens} tokens with the chat template; the model's context holds {context}: shorten it"
            ),
            Error::Inference(m) => write!(f, "inference failed: {m}"),
            Error::Output(p, e) => write!(f, "cannot write {}: {e}", p.display()),
        }
    }
}

impl From<UsageError> for Error {
    fn from(e: UsageError) -> Self {
        Error::Usage(e.0)
    }
}

/// The CPUs this process may use: its affinity mask, capped by the cgroup's CPU quota
/// (`cpu.max` in cgroup v2, `cpu.cfs_quota_us / cpu.cfs_period_us` in v1), rounded down, at
/// least 1. llama.cpp's own default (4) on a 2-CPU quota runs at a quarter of the speed.
fn available_cpus() -> u32 {
    let affinity = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let quota = cgroup_quota().map(|q| q.floor().max(1.0) as u32);
    quota.map_or(affinity, |q| q.min(affinity)).max(1)
}

fn cgroup_quota() -> Option<f64> {
    if let Ok(s) = fs::read_to_string("/sys/fs/cgroup/cpu.max") {
        let mut f = s.split_whitespace();
        let (q, p) = (f.next()?, f.next()?);
        if q == "max" {
            return None;
        }
        let (q, p): (f64, f64) = (q.parse().ok()?, p.parse().ok()?);
        return (q > 0.0 && p > 0.0).then_some(q / p);
    }
    let q: f64 = fs::read_to_string("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").ok()?.trim().parse().ok()?;
    let p: f64 = fs::read_to_string("/sys/fs/cgroup/cpu/cpu.cfs_period_us").ok()?.trim().parse().ok()?;
    (q > 0.0 && p > 0.0).then_some(q / p)
}

struct Engine {
    backend: LlamaBackend,
    model: LlamaModel,
    threads: u32,
    load: Duration,
}

impl Engine {
    fn load(path: &Path, threads: u32) -> Result<Engine, Error> {
        if !path.is_file() {
            return Err(Error::ModelMissing(path.to_path_buf()));
        }
        let start = Instant::now();
        let mut backend = LlamaBackend::init().map_err(|e| Error::Model(e.to_string()))?;
        backend.void_logs();
        let model = LlamaModel::load_from_file(&backend, path, &LlamaModelParams::default())
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        Ok(Engine { backend, model, threads, load: start.elapsed() })
    }

    /// The rendered conversation's tokens: the template's pieces with special tokens parsed,
    /// the messages' contents without (see `chat`).
    fn tokens(&self, pieces: &[Piece]) -> Vec<LlamaToken> {
        let vocab = self.model.vocab();
        pieces
            .iter()
            .flat_map(|p| match p {
                Piece::Template(s) => vocab.tokenize(s.as_bytes(), false, true),
                Piece::Text(s) => vocab.tokenize(s.as_bytes(), false, false),
            })
            .collect()
    }

    fn context(&self, n_ctx: u32) -> Result<LlamaContext<'_>, Error> {
        let threads = self.threads as i32;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_ctx)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            .with_flash_attention_policy(FLASH_ATTN_DISABLED);
        self.model.new_context(&self.backend, params).map_err(|e| Error::Inference(format!("creating a context of {n_ctx} tokens: {e}")))
    }

    /// Decodes `prompt`, then samples up to `max_tokens` tokens (stopping at an end of turn when
    /// `stop` is set; the benchmark generates a fixed number).
    fn generate(&self, prompt: &[LlamaToken], max_tokens: u32, sampling: &Sampling, stop: bool) -> Result<Generation, Error> {
        let n_ctx_train = self.model.n_ctx_train();
        if prompt.is_empty() || prompt.len() as u64 >= n_ctx_train as u64 {
            return Err(Error::PromptTooLong { tokens: prompt.len(), context: n_ctx_train });
        }
        let n_ctx = (prompt.len() as u64 + max_tokens as u64).min(n_ctx_train as u64) as u32;
        let mut ctx = self.context(n_ctx)?;
        let mut chooser = sampling::Chooser::new(sampling, self.model.n_vocab(), n_ctx);
        // The prompt is in the penalties' window, as in Ollama and llama.cpp's server.
        chooser.accept_many(prompt);

        let start = Instant::now();
        let mut batch = LlamaBatch::new(prompt.len().max(1), 1);
        let last = prompt.len() - 1;
        for (i, &t) in prompt.iter().enumerate() {
            batch.add(t, i as i32, &[0], i == last).map_err(|e| Error::Inference(e.to_string()))?;
        }
        ctx.decode(&mut batch).map_err(|e| Error::Inference(format!("prompt: {e}")))?;
        let prompt_eval = start.elapsed();

        let start = Instant::now();
        let mut tokens = Vec::new();
        let mut pos = prompt.len() as i32;
        let mut logits_at = batch.n_tokens() - 1;
        let mut sampling = Duration::ZERO;
        let done_reason = loop {
            if tokens.len() as u32 >= max_tokens || pos as u32 >= n_ctx {
                break "length";
            }
            let chosen = Instant::now();
            let t = chooser
                .choose(ctx.get_logits_ith(logits_at))
                .ok_or_else(|| Error::Inference(format!("no token chosen after {} tokens", tokens.len())))?;
            sampling += chosen.elapsed();
            if stop && (STOP_TOKENS.contains(&t.0) || self.model.vocab().is_eog(t)) {
                break "stop";
            }
            tokens.push(t);
            batch.clear();
            batch.add(t, pos, &[0], true).map_err(|e| Error::Inference(e.to_string()))?;
            ctx.decode(&mut batch).map_err(|e| Error::Inference(format!("token {}: {e}", tokens.len())))?;
            pos += 1;
            logits_at = 0;
        };
        Ok(Generation { tokens, done_reason, prompt_eval, eval: start.elapsed(), sampling })
    }

    /// The text of generated tokens: their bytes joined, decoded as UTF-8 once (a character may
    /// span tokens).
    fn text(&self, tokens: &[LlamaToken]) -> String {
        let vocab = self.model.vocab();
        let bytes: Vec<u8> = tokens.iter().flat_map(|&t| vocab.token_to_piece(t, false, None)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

struct Generation {
    tokens: Vec<LlamaToken>,
    done_reason: &'static str,
    prompt_eval: Duration,
    eval: Duration,
    /// The part of `eval` spent choosing tokens (the sampler chain), not decoding.
    sampling: Duration,
}

fn per_s(n: usize, d: Duration) -> f64 {
    if d.is_zero() { 0.0 } else { n as f64 / d.as_secs_f64() }
}

fn run(o: Options) -> Result<(), Error> {
    let started = Instant::now();
    let wall_start = SystemTime::now();
    let threads = o.threads.unwrap_or_else(available_cpus);
    let engine = Engine::load(&o.model, threads)?;

    if o.bench {
        return bench(&engine);
    }
    let Some(request) = &o.request else {
        return Err(Error::Usage("nothing to answer".into()));
    };
    let pieces = match request {
        Request::Generate(prompt) => chat::user_turn(prompt),
        Request::Chat(messages) => chat::render(messages),
    };
    let prompt = engine.tokens(&pieces);
    let g = engine.generate(&prompt, o.max_tokens, &o.sampling, true)?;
    let answer = engine.text(&g.tokens);
    let total = started.elapsed();

    let ns = |d: Duration| json(&if o.timings { d.as_nanos() as u64 } else { 0 });
    let created_at = if o.timings { response::rfc3339(wall_start) } else { FIXED_CREATED_AT.to_string() };
    // Ollama's field order: /api/generate's GenerateResponse, /api/chat's ChatResponse.
    let mut fields = vec![("model", json(&MODEL_NAME)), ("created_at", json(&created_at))];
    match request {
        Request::Generate(_) => {
            let context: Vec<i32> = prompt.iter().chain(&g.tokens).map(|t| t.0).collect();
            fields.extend([
                ("response", json(&answer)),
                ("done", json(&true)),
                ("done_reason", json(&g.done_reason)),
                ("context", json(&context)),
            ]);
        }
        Request::Chat(_) => fields.extend([
            ("message", json(&ChatMessage { role: "assistant", content: &answer })),
            ("done_reason", json(&g.done_reason)),
            ("done", json(&true)),
        ]),
    }
    fields.extend([
        ("total_duration", ns(total)),
        ("load_duration", ns(engine.load)),
        ("prompt_eval_count", json(&prompt.len())),
        ("prompt_eval_duration", ns(g.prompt_eval)),
        ("eval_count", json(&g.tokens.len())),
        ("eval_duration", ns(g.eval)),
    ]);
    response::write_atomically(&o.out, response::response_json(&fields).as_bytes())
        .map_err(|e| Error::Output(o.out.clone(), e))?;

    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{answer}").and_then(|_| stdout.flush());
    if o.timings {
        eprintln!(
            "timings model={BENCH_NAME} threads={threads} prompt_tokens={} prompt_tok_per_s={:.1} gen_tokens={} gen_tok_per_s={:.1} load_ms={:.0} total_ms={:.0}",
            prompt.len(),
            per_s(prompt.len(), g.prompt_eval),
            g.tokens.len(),
            per_s(g.tokens.len(), g.eval),
            engine.load.as_secs_f64() * 1000.0,
            total.as_secs_f64() * 1000.0,
        );
    }
    Ok(())
}

/// `--bench`: the Vancouver prompt, then exactly `BENCH_TOKENS` tokens with the default
/// sampling (a job's work, end-of-turn tokens not honoured so every run does the same amount),
/// `BENCH_RUNS` times; one line with the medians.
fn bench(engine: &Engine) -> Result<(), Error> {
    let prompt = engine.tokens(&chat::user_turn(BENCH_PROMPT));
    let mut runs = Vec::new();
    for _ in 0..BENCH_RUNS {
        let g = engine.generate(&prompt, BENCH_TOKENS, &Sampling::default(), false)?;
        let sample_us = g.sampling.as_secs_f64() * 1e6 / g.tokens.len().max(1) as f64;
        runs.push((per_s(prompt.len(), g.prompt_eval), per_s(g.tokens.len(), g.eval), g.tokens.len(), sample_us));
    }
    let median = |f: fn(&(f64, f64, usize, f64)) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "bench model={BENCH_NAME} threads={} prompt_tokens={} prompt_tok_per_s={:.1} gen_tokens={} gen_tok_per_s={:.1} sample_us_per_token={:.0} load_ms={:.0} runs={BENCH_RUNS}",
        engine.threads,
        prompt.len(),
        median(|r| r.0),
        runs[0].2,
        median(|r| r.1),
        median(|r| r.3),
        engine.load.as_secs_f64() * 1000.0,
    );
    Ok(())
}

fn main() -> ExitCode {
    let result = match args::parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Help) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(o)) => run(o),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ Error::Usage(_)) => {
            eprintln!("ollama-pipeline: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("ollama-pipeline: error: {e}");
            ExitCode::FAILURE
        }
    }
}
