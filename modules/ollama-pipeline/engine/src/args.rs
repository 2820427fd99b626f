//! The command line: what to answer (a prompt or a conversation), how to sample, where the
//! model and the answer are.

use std::path::PathBuf;

use crate::chat::{self, Message};
use crate::sampling::{range, Sampling};

pub const USAGE: &str = "usage:
  ollama-pipeline (--prompt TEXT | --messages JSON) [--max-tokens N] [sampling options]
                  [--timings true|false] [--model PATH] [--out PATH] [--threads N]
  ollama-pipeline --bench [--model PATH] [--threads N]

  --prompt TEXT              the user's message; response.json is Ollama's /api/generate answer
  --messages JSON            a conversation, [{\"role\": \"system\"|\"user\"|\"assistant\", \"content\": \"...\"}, ...];
                             response.json is Ollama's /api/chat answer
                             (give one of the two; an empty value counts as not given)
  --max-tokens N             most tokens to generate, 1-32768 (default 256)
  sampling (Ollama's options and defaults, llama.cpp's order):
  --temperature T            0-2 (default 0.8); 0 is greedy decoding
  --top-k N                  0-1000 (default 40); 0 keeps every token
  --top-p P                  0-1 (default 0.9); 1 keeps every token
  --min-p P                  0-1 (default 0); 0 keeps every token
  --repeat-penalty R         0.1-2 (default 1.1); 1 is off
  --repeat-last-n N          -1-8192 (default 64): the penalties' window; 0 off, -1 the whole context
  --presence-penalty P       -2-2 (default 0)
  --frequency-penalty P      -2-2 (default 0)
  --seed S                   0-4294967294 (default 42): the same seed gives the same answer
  --timings BOOL             true: real durations and created_at in response.json and a timings line
                             on stderr; false (default): zeros and 1970-01-01, so runs give equal bytes
  --model PATH               the GGUF file (default /model.gguf)
  --out PATH                 where response.json goes (default /outputs/response.json)
  --threads N                CPU threads (default: the CPUs this process may use, cgroup quota included)
  --bench                    print one line: prompt and generation tokens/s (median of 3 runs)";

/// What the job asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `/api/generate`: one user message.
    Generate(String),
    /// `/api/chat`: a conversation.
    Chat(Vec<Message>),
}

#[derive(Debug, Clone)]
pub struct Options {
    /// `None` only with `--bench`.
    pub request: Option<Request>,
    pub max_tokens: u32,
    pub sampling: Sampling,
    pub timings: bool,
    pub model: PathBuf,
    pub out: PathBuf,
    pub threads: Option<u32>,
    pub bench: bool,
}

/// A bad command line: what was wrong (exit status 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

pub enum Parsed {
    Run(Options),
    Help,
}

pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Parsed, UsageError> {
    let mut o = Options {
        request: None,
        max_tokens: 256,
        sampling: Sampling::default(),
        timings: false,
        model: PathBuf::from("/model.gguf"),
        out: PathBuf::from("/outputs/response.json"),
        threads: None,
        bench: false,
    };
    let (mut prompt, mut messages) = (String::new(), String::new());
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        // `--name=value` or `--name value`; the value is taken verbatim (it may start with `-`).
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if name == "--bench" || name == "--help" || name == "-h" {
            if inline.is_some() {
                return Err(UsageError(format!("{name} takes no value")));
            }
            if name == "--bench" {
                o.bench = true;
                continue;
            }
            return Ok(Parsed::Help);
        }
        let mut value = || -> Result<String, UsageError> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it.next().ok_or_else(|| UsageError(format!("{name} needs a value"))),
            }
        };
        let s = &mut o.sampling;
        match name.as_str() {
            "--prompt" => prompt = value()?,
            "--messages" => messages = value()?,
            "--max-tokens" => o.max_tokens = int(&name, &value()?, (1, 32768))? as u32,
            "--temperature" => s.temperature = num(&name, &value()?, range::TEMPERATURE)?,
            "--top-k" => s.top_k = int(&name, &value()?, range::TOP_K)? as i32,
            "--top-p" => s.top_p = num(&name, &value()?, range::TOP_P)?,
            "--min-p" => s.min_p = num(&name, &value()?, range::MIN_P)?,
            "--repeat-penalty" => s.repeat_penalty = num(&name, &value()?, range::REPEAT_PENALTY)?,
            "--repeat-last-n" => s.repeat_last_n = int(&name, &value()?, range::REPEAT_LAST_N)? as i32,
            "--presence-penalty" => s.presence_penalty = num(&name, &value()?, range::PRESENCE_PENALTY)?,
            "--frequency-penalty" => s.frequency_penalty = num(&name, &value()?, range::FREQUENCY_PENALTY)?,
            "--seed" => s.seed = int(&name, &value()?, range::SEED)? as u32,
            "--timings" => {
                o.timings = match value()?.as_str() {
                    "true" => true,
                    "false" => false,
                    other => return Err(UsageError(format!("--timings: '{other}' is not true or false"))),
                }
            }
            "--model" => o.model = PathBuf::from(value()?),
            "--out" => o.out = PathBuf::from(value()?),
            "--threads" => o.threads = Some(int(&name, &value()?, (1, 1024))? as u32),
            _ => return Err(UsageError(format!("unknown argument '{arg}'\n{USAGE}"))),
        }
    }
    o.request = match (prompt.is_empty(), messages.is_empty()) {
        (false, false) => {
            return Err(UsageError("give a prompt (Prompt) or a conversation (Messages), not both".into()));
        }
        (false, true) if prompt.trim().is_empty() => return Err(UsageError("the prompt is only white space".into())),
        (false, true) => Some(Request::Generate(prompt)),
        (true, false) => Some(Request::Chat(chat::parse_messages(&messages).map_err(UsageError)?)),
        (true, true) if o.bench => None,
        (true, true) => {
            return Err(UsageError(format!(
                "nothing to answer: give a prompt (Prompt, --prompt) or a conversation (Messages, --messages)\n{USAGE}"
            )))
        }
    };
    Ok(Parsed::Run(o))
}

fn int(name: &str, v: &str, (min, max): (i64, i64)) -> Result<i64, UsageError> {
    let n: i64 = v.trim().parse().map_err(|_| UsageError(format!("{name}: '{v}' is not a whole number")))?;
    if n < min || n > max {
        return Err(UsageError(format!("{name}: {n} is outside {min} to {max}")));
    }
    Ok(n)
}

fn num(name: &str, v: &str, (min, max): (f64, f64)) -> Result<f32, UsageError> {
    let n: f64 = v.trim().parse().map_err(|_| UsageError(format!("{name}: '{v}' is not a number")))?;
    if !n.is_finite() || n < min || n > max {
        return Err(UsageError(format!("{name}: {v} is outside {min} to {max}")));
    }
    Ok(n as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Role;

    fn parse(a: &[&str]) -> Result<Options, UsageError> {
        match parse_args(a.iter().map(|s| s.to_string()))? {
            Parsed::Run(o) => Ok(o),
            Parsed::Help => panic!("help"),
        }
    }

    #[test]
    fn prompt_value_is_taken_verbatim_even_when_it_looks_like_a_flag() {
        let o = parse(&["--prompt", "--bench", "--max-tokens=7", "--timings", "true"]).unwrap();
        assert_eq!(o.request, Some(Request::Generate("--bench".into())));
        assert!(!o.bench);
        assert_eq!(o.max_tokens, 7);
        assert!(o.timings);
    }

    #[test]
    fn sampling_defaults_to_ollamas_and_every_option_is_read() {
        assert_eq!(parse(&["--prompt", "x"]).unwrap().sampling, Sampling::default());
        let o = parse(&[
            "--prompt", "x", "--temperature", "0", "--top-k", "0", "--top-p", "1", "--min-p", "0.05",
            "--repeat-penalty", "1.3", "--repeat-last-n", "-1", "--presence-penalty", "-0.5",
            "--frequency-penalty", "1.5", "--seed", "4294967294",
        ])
        .unwrap();
        let want = Sampling {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.05,
            repeat_penalty: 1.3,
            repeat_last_n: -1,
            presence_penalty: -0.5,
            frequency_penalty: 1.5,
            seed: 4_294_967_294,
        };
        assert_eq!(o.sampling, want);
    }

    #[test]
    fn out_of_range_values_are_refused_with_their_range() {
        for (flag, bad) in [
            ("--temperature", "2.5"),
            ("--temperature", "NaN"),
            ("--top-k", "-1"),
            ("--top-k", "1001"),
            ("--top-p", "1.01"),
            ("--min-p", "-0.1"),
            ("--repeat-penalty", "0"),
            ("--repeat-last-n", "-2"),
            ("--presence-penalty", "2.5"),
            ("--frequency-penalty", "-3"),
            ("--seed", "4294967295"),
            ("--seed", "-1"),
            ("--max-tokens", "0"),
            ("--timings", "yes"),
        ] {
            let e = parse(&["--prompt", "x", flag, bad]).expect_err(&format!("{flag} {bad} accepted"));
            assert!(e.0.starts_with(flag), "{flag} {bad}: {}", e.0);
        }
    }

    #[test]
    fn exactly_one_of_prompt_and_messages() {
        let chat = r#"[{"role":"user","content":"hi"}]"#;
        let o = parse(&["--prompt", "", "--messages", chat]).unwrap();
        assert!(matches!(o.request, Some(Request::Chat(ref m)) if m.len() == 1 && m[0].role == Role::User));
        assert!(parse(&["--prompt", "x", "--messages", chat]).unwrap_err().0.contains("not both"));
        assert!(parse(&["--prompt", "", "--messages", ""]).unwrap_err().0.starts_with("nothing to answer"));
        assert!(parse(&[]).is_err());
        assert!(parse(&["--prompt", "  \n"]).is_err());
        assert!(parse(&["--messages", "[]"]).is_err());
        assert!(parse(&["--messages", r#"[{"role":"robot","content":"x"}]"#]).unwrap_err().0.contains("--messages"));
        let bench = parse(&["--bench"]).unwrap();
        assert!(bench.bench && bench.request.is_none());
    }
}
