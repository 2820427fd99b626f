//! The engine of the `ollama-pipeline` Lilypad module: one chat turn with SmolLM2-135M-Instruct
//! through llama.cpp (the `llama-cpp-2` bindings, CPU), written as Ollama's `/api/generate`
//! answer to `/outputs/response.json`.
//!
//! ```text
//! ollama-pipeline --prompt TEXT [--max-tokens N] [--temperature T] [--seed S] [--timings BOOL]
//!                 [--model /model.gguf] [--out /outputs/response.json] [--threads N]
//! ollama-pipeline --bench [--model /model.gguf] [--threads N]
//! ```
//!
//! Same arguments, same bytes: stdout (the response text), stderr (empty) and response.json do
//! not change between runs unless `--timings true` asks for the measurements of this run
//! (durations, wall-clock `created_at`, a `timings ...` line on stderr).

use std::fmt;
use std::fs;
use std::io::Write;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

/// The `model` field of response.json.
const MODEL_NAME: &str = "smollm2:135m";
/// The name in the benchmark line.
const BENCH_NAME: &str = "smollm2-135m";
/// What SmolLM2's chat template (in the GGUF) inserts when the conversation has no system turn.
const DEFAULT_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
/// `<|endoftext|>` and `<|im_end|>`: generation stops at either.
const STOP_TOKENS: [i32; 2] = [0, 2];
/// `created_at` when timings are off: the same for every run.
/// Ollama's default repeat penalty and window.
const REPEAT_PENALTY: f32 = 1.1;
const REPEAT_LAST_N: i32 = 64;
const FIXED_CREATED_AT: &str = "1970-01-01T00:00:00Z";
/// The benchmark's prompt and length (greedy): fixed, so numbers compare across machines.
const BENCH_PROMPT: &str = "What are some top spots to visit when in Vancouver, BC, Canada";
const BENCH_TOKENS: u32 = 128;
const BENCH_RUNS: usize = 3;

const USAGE: &str = "usage:
  ollama-pipeline --prompt TEXT [--max-tokens N] [--temperature T] [--seed S] [--timings true|false]
                  [--model PATH] [--out PATH] [--threads N]
  ollama-pipeline --bench [--model PATH] [--threads N]

  --prompt TEXT        the user's message (not empty)
  --max-tokens N       most tokens to generate, 1-32768 (default 256)
  --temperature T      0 = greedy (default); above 0: seeded sampling (top-k 40, top-p 0.9);
                       both with a repeat penalty of 1.1 over the last 64 tokens
  --seed S             sampling seed, 0-4294967295 (default 42)
  --timings BOOL       true: real durations and created_at in response.json and a timings line
                       on stderr; false (default): zeros and 1970-01-01, so runs give equal bytes
  --model PATH         the GGUF file (default /model.gguf)
  --out PATH           where response.json goes (default /outputs/response.json)
  --threads N          CPU threads (default: the CPUs this process may use, cgroup quota included)
  --bench              print one line: prompt and generation tokens/s (median of 3 runs)";

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
                "the prompt is {tokens} tokens with the chat template; the model's context holds {context}"
            ),
            Error::Inference(m) => write!(f, "inference failed: {m}"),
            Error::Output(p, e) => write!(f, "cannot write {}: {e}", p.display()),
        }
    }
}

#[derive(Debug, Clone)]
struct Options {
    prompt: Option<String>,
    max_tokens: u32,
    temperature: f32,
    seed: u32,
    timings: bool,
    model: PathBuf,
    out: PathBuf,
    threads: Option<u32>,
    bench: bool,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Options, Error> {
    let mut o = Options {
        prompt: None,
        max_tokens: 256,
        temperature: 0.0,
        seed: 42,
        timings: false,
        model: PathBuf::from("/model.gguf"),
        out: PathBuf::from("/outputs/response.json"),
        threads: None,
        bench: false,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        // `--name=value` or `--name value`; the value is taken verbatim (it may start with `-`).
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if name == "--bench" || name == "--help" || name == "-h" {
            if inline.is_some() {
                return Err(Error::Usage(format!("{name} takes no value")));
            }
            if name == "--bench" {
                o.bench = true;
                continue;
            }
            println!("{USAGE}");
            std::process::exit(0);
        }
        let mut value = || -> Result<String, Error> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it.next().ok_or_else(|| Error::Usage(format!("{name} needs a value"))),
            }
        };
        match name.as_str() {
            "--prompt" => o.prompt = Some(value()?),
            "--max-tokens" => o.max_tokens = parse_num(&name, &value()?, 1, 32768)? as u32,
            "--temperature" => {
                let v = value()?;
                let t: f32 = v.trim().parse().map_err(|_| Error::Usage(format!("--temperature: '{v}' is not a number")))?;
                if !t.is_finite() || !(0.0..=2.0).contains(&t) {
                    return Err(Error::Usage(format!("--temperature: {v} is outside 0 to 2")));
                }
                o.temperature = t;
            }
            "--seed" => o.seed = parse_num(&name, &value()?, 0, u32::MAX as u64)? as u32,
            "--timings" => {
                o.timings = match value()?.as_str() {
                    "true" => true,
                    "false" => false,
                    other => return Err(Error::Usage(format!("--timings: '{other}' is not true or false"))),
                }
            }
            "--model" => o.model = PathBuf::from(value()?),
            "--out" => o.out = PathBuf::from(value()?),
            "--threads" => o.threads = Some(parse_num(&name, &value()?, 1, 1024)? as u32),
            _ => return Err(Error::Usage(format!("unknown argument '{arg}'\n{USAGE}"))),
        }
    }
    if !o.bench {
        match &o.prompt {
            None => return Err(Error::Usage(format!("--prompt is required\n{USAGE}"))),
            Some(p) if p.trim().is_empty() => return Err(Error::Usage("the prompt is empty".into())),
            Some(_) => {}
        }
    }
    Ok(o)
}

fn parse_num(name: &str, v: &str, min: u64, max: u64) -> Result<u64, Error> {
    let n: u64 = v.trim().parse().map_err(|_| Error::Usage(format!("{name}: '{v}' is not a whole number")))?;
    if n < min || n > max {
        return Err(Error::Usage(format!("{name}: {n} is outside {min} to {max}")));
    }
    Ok(n)
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

    /// ChatML as the model's template renders one user turn with the default system message.
    /// The template's markers are tokenized with special tokens parsed; the user's text is not,
    /// so a prompt containing `<|im_end|>` stays text and cannot end its turn.
    fn chat_tokens(&self, prompt: &str) -> Vec<LlamaToken> {
        let vocab = self.model.vocab();
        let special = |s: &str| vocab.tokenize(s.as_bytes(), false, true);
        let mut t = special(&format!("<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\n"));
        t.extend(vocab.tokenize(prompt.as_bytes(), false, false));
        t.extend(special("<|im_end|>\n<|im_start|>assistant\n"));
        t
    }

    fn context(&self, n_ctx: u32) -> Result<LlamaContext<'_>, Error> {
        let threads = self.threads as i32;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_ctx)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        self.model.new_context(&self.backend, params).map_err(|e| Error::Inference(format!("creating a context of {n_ctx} tokens: {e}")))
    }

    fn generate(&self, prompt: &[LlamaToken], max_tokens: u32, temperature: f32, seed: u32) -> Result<Generation, Error> {
        let n_ctx_train = self.model.n_ctx_train();
        if prompt.len() as u64 >= n_ctx_train as u64 {
            return Err(Error::PromptTooLong { tokens: prompt.len(), context: n_ctx_train });
        }
        let n_ctx = (prompt.len() as u64 + max_tokens as u64).min(n_ctx_train as u64) as u32;
        let mut ctx = self.context(n_ctx)?;
        // Ollama's defaults: a repeat penalty of 1.1 over the last 64 tokens (without it a model
        // this small decoding greedily soon repeats one sentence), then greedy at temperature 0,
        // else top-k 40, top-p 0.9, temperature, and a draw seeded by `seed`.
        let penalty = LlamaSampler::penalties(self.model.n_vocab(), REPEAT_LAST_N, REPEAT_PENALTY, 0.0, 0.0);
        let mut sampler = if temperature == 0.0 {
            LlamaSampler::chain_simple([penalty, LlamaSampler::greedy()])
        } else {
            LlamaSampler::chain_simple([
                penalty,
                LlamaSampler::top_k(40),
                LlamaSampler::top_p(0.9, 1),
                LlamaSampler::temp(temperature),
                LlamaSampler::dist(seed),
            ])
        };

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
        let done_reason = loop {
            if tokens.len() as u32 >= max_tokens || pos as u32 >= n_ctx {
                break "length";
            }
            let t = sampler.sample(&ctx, logits_at);
            if STOP_TOKENS.contains(&t.0) || self.model.vocab().is_eog(t) {
                break "stop";
            }
            tokens.push(t);
            batch.clear();
            batch.add(t, pos, &[0], true).map_err(|e| Error::Inference(e.to_string()))?;
            ctx.decode(&mut batch).map_err(|e| Error::Inference(format!("token {}: {e}", tokens.len())))?;
            pos += 1;
            logits_at = 0;
        };
        Ok(Generation { tokens, done_reason, prompt_eval, eval: start.elapsed() })
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
}

fn per_s(n: usize, d: Duration) -> f64 {
    if d.is_zero() { 0.0 } else { n as f64 / d.as_secs_f64() }
}

/// RFC 3339 UTC with nanoseconds, as Ollama writes `created_at`.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Ollama's `/api/generate` fields, in its order. Pretty-printed with one field per line and
/// `context` on one line.
fn response_json(fields: &[(&str, serde_json::Value)]) -> String {
    let mut s = String::from("{\n");
    for (i, (k, v)) in fields.iter().enumerate() {
        s.push_str(&format!("  {}: {}", serde_json::Value::from(*k), v));
        s.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
    }
    s.push_str("}\n");
    s
}

/// Writes `path` whole or not at all: a temporary file next to it, synced, then renamed.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let err = |e| Error::Output(path.to_path_buf(), e);
    let name = path.file_name().ok_or_else(|| err(std::io::Error::other("not a file name")))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

fn run(o: Options) -> Result<(), Error> {
    let started = Instant::now();
    let wall_start = SystemTime::now();
    let threads = o.threads.unwrap_or_else(available_cpus);
    let engine = Engine::load(&o.model, threads)?;

    if o.bench {
        let prompt = engine.chat_tokens(BENCH_PROMPT);
        let mut runs = Vec::new();
        for _ in 0..BENCH_RUNS {
            let g = engine.generate(&prompt, BENCH_TOKENS, 0.0, 0)?;
            runs.push((per_s(prompt.len(), g.prompt_eval), per_s(g.tokens.len(), g.eval), g.tokens.len()));
        }
        let median = |f: fn(&(f64, f64, usize)) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "bench model={BENCH_NAME} threads={threads} prompt_tokens={} prompt_tok_per_s={:.1} gen_tokens={} gen_tok_per_s={:.1} load_ms={:.0} runs={BENCH_RUNS}",
            prompt.len(),
            median(|r| r.0),
            runs[0].2,
            median(|r| r.1),
            engine.load.as_secs_f64() * 1000.0,
        );
        return Ok(());
    }

    let user = o.prompt.as_deref().unwrap_or_default();
    let prompt = engine.chat_tokens(user);
    let g = engine.generate(&prompt, o.max_tokens, o.temperature, o.seed)?;
    let response = engine.text(&g.tokens);
    let total = started.elapsed();

    let ns = |d: Duration| if o.timings { d.as_nanos() as u64 } else { 0 };
    let created_at = if o.timings { rfc3339(wall_start) } else { FIXED_CREATED_AT.to_string() };
    let context: Vec<i32> = prompt.iter().chain(&g.tokens).map(|t| t.0).collect();
    let json = response_json(&[
        ("model", MODEL_NAME.into()),
        ("created_at", created_at.into()),
        ("response", response.clone().into()),
        ("done", true.into()),
        ("done_reason", g.done_reason.into()),
        ("context", context.into()),
        ("total_duration", ns(total).into()),
        ("load_duration", ns(engine.load).into()),
        ("prompt_eval_count", prompt.len().into()),
        ("prompt_eval_duration", ns(g.prompt_eval).into()),
        ("eval_count", g.tokens.len().into()),
        ("eval_duration", ns(g.eval).into()),
    ]);
    write_atomically(&o.out, json.as_bytes())?;

    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{response}").and_then(|_| stdout.flush());
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

fn main() -> ExitCode {
    let result = parse_args(std::env::args().skip(1)).and_then(run);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn prompt_value_is_taken_verbatim_even_when_it_looks_like_a_flag() {
        let o = parse_args(args(&["--prompt", "--bench", "--max-tokens=7", "--timings", "true"])).unwrap();
        assert_eq!(o.prompt.as_deref(), Some("--bench"));
        assert!(!o.bench);
        assert_eq!(o.max_tokens, 7);
        assert!(o.timings);
    }

    #[test]
    fn empty_prompt_and_out_of_range_values_are_refused() {
        assert!(matches!(parse_args(args(&["--prompt", "  \n"])), Err(Error::Usage(_))));
        assert!(matches!(parse_args(args(&[])), Err(Error::Usage(_))));
        assert!(matches!(parse_args(args(&["--prompt", "x", "--temperature", "2.5"])), Err(Error::Usage(_))));
        assert!(matches!(parse_args(args(&["--prompt", "x", "--seed", "4294967296"])), Err(Error::Usage(_))));
        assert!(matches!(parse_args(args(&["--prompt", "x", "--timings", "yes"])), Err(Error::Usage(_))));
        assert!(parse_args(args(&["--bench"])).unwrap().bench);
    }

    #[test]
    fn rfc3339_formats_utc_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_719_256_806, 374_579_437);
        assert_eq!(rfc3339(t), "2024-06-24T19:20:06.374579437Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn response_json_is_valid_json_with_fields_in_order() {
        let s = response_json(&[("model", "m".into()), ("context", vec![1, 2].into()), ("done", true.into())]);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["context"], serde_json::json!([1, 2]));
        assert!(s.find("\"model\"").unwrap() < s.find("\"done\"").unwrap());
    }
}
