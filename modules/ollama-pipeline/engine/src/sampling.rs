//! How the next token is chosen: Ollama's sampling options, their ranges, and the llama.cpp
//! sampler chain they make (in llama.cpp's own order: penalties, top-k, top-p, min-p,
//! temperature, then a seeded draw; greedy at temperature 0).

use std::collections::VecDeque;

use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

/// Ollama's option names, their accepted ranges and defaults. The module's spec declares the
/// same ranges for its inputs; the engine checks them again for direct use.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0: greedy decoding (the penalties still apply); above 0: a seeded draw.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 keeps all.
    pub top_k: i32,
    /// Keep the most likely tokens whose probabilities add up to p; 1 keeps all.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one; 0 keeps all.
    pub min_p: f32,
    /// Divides the logit of a token seen in the window (multiplies a negative one); 1 is off.
    pub repeat_penalty: f32,
    /// The window of the penalties, in tokens: 0 is off, -1 is the whole context.
    pub repeat_last_n: i32,
    /// Subtracted from the logit of every token seen in the window.
    pub presence_penalty: f32,
    /// Subtracted from the logit of a token once per time it was seen in the window.
    pub frequency_penalty: f32,
    /// The draw's seed: the same seed and inputs give the same answer.
    pub seed: u32,
}

/// Ollama's defaults, with a fixed seed instead of Ollama's random one (results must repeat
/// byte for byte for a mediator to check them).
impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.0,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 42,
        }
    }
}

/// The accepted ranges (inclusive), used by the argument parser and its messages.
pub mod range {
    pub const TEMPERATURE: (f64, f64) = (0.0, 2.0);
    pub const TOP_K: (i64, i64) = (0, 1000);
    pub const TOP_P: (f64, f64) = (0.0, 1.0);
    pub const MIN_P: (f64, f64) = (0.0, 1.0);
    pub const REPEAT_PENALTY: (f64, f64) = (0.1, 2.0);
    pub const REPEAT_LAST_N: (i64, i64) = (-1, 8192);
    pub const PRESENCE_PENALTY: (f64, f64) = (-2.0, 2.0);
    pub const FREQUENCY_PENALTY: (f64, f64) = (-2.0, 2.0);
    /// llama.cpp reads a seed of 0xFFFFFFFF (`LLAMA_DEFAULT_SEED`) as "pick a random one", which
    /// would make answers unrepeatable: the largest seed is one less.
    pub const SEED: (i64, i64) = (0, 4_294_967_294);
}

impl Sampling {
    /// The penalties' window for a context of `n_ctx` tokens (`-1`: all of it).
    pub fn penalty_window(&self, n_ctx: u32) -> i32 {
        if self.repeat_last_n < 0 {
            i32::try_from(n_ctx).unwrap_or(i32::MAX)
        } else {
            self.repeat_last_n
        }
    }

    /// The llama.cpp sampler chain for a model of `n_vocab` tokens and a context of `n_ctx`.
    pub fn sampler(&self, n_vocab: i32, n_ctx: u32) -> LlamaSampler {
        let mut chain = vec![LlamaSampler::penalties(
            n_vocab,
            self.penalty_window(n_ctx),
            self.repeat_penalty,
            self.frequency_penalty,
            self.presence_penalty,
        )];
        if self.temperature == 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            if self.top_k > 0 {
                chain.push(LlamaSampler::top_k(self.top_k));
            }
            if self.top_p < 1.0 {
                chain.push(LlamaSampler::top_p(self.top_p, 1));
            }
            if self.min_p > 0.0 {
                chain.push(LlamaSampler::min_p(self.min_p, 1));
            }
            chain.push(LlamaSampler::temp(self.temperature));
            chain.push(LlamaSampler::dist(self.seed));
        }
        LlamaSampler::chain_simple(chain)
    }
}

/// Chooses each next token with the chain of [`Sampling::sampler`], handing the chain only the
/// tokens that can survive its top-k (greedy: its top 1): the `k` highest logits after the
/// repeat penalties, found in one pass over the vocabulary. The chain's first step, top-k after
/// the penalties, keeps exactly those (with the same penalised logits), so every later step and
/// the seeded draw see the same candidates as over the whole vocabulary; building and
/// partially sorting an array of all 49,152 tokens was most of the time spent choosing.
pub struct Chooser {
    chain: LlamaSampler,
    /// Some(k): only the k best candidates reach the chain; None: all of them (no top-k).
    keep: Option<usize>,
    /// The penalties' window: the last `window` accepted tokens (0: no penalties).
    window: usize,
    recent: VecDeque<i32>,
    repeat: f32,
    frequency: f32,
    presence: f32,
    /// Scratch space, reused from token to token.
    best: Vec<(f32, i32)>,
    in_window: Vec<bool>,
}

impl Chooser {
    /// The chooser of `sampling` for a model of `n_vocab` tokens and a context of `n_ctx`.
    pub fn new(sampling: &Sampling, n_vocab: i32, n_ctx: u32) -> Self {
        let keep = if sampling.temperature == 0.0 {
            Some(1)
        } else if sampling.top_k > 0 {
            Some(sampling.top_k as usize)
        } else {
            None
        };
        let penalties_on = sampling.repeat_penalty != 1.0 || sampling.frequency_penalty != 0.0 || sampling.presence_penalty != 0.0;
        let window = if penalties_on { usize::try_from(sampling.penalty_window(n_ctx)).unwrap_or(0) } else { 0 };
        Chooser {
            chain: sampling.sampler(n_vocab, n_ctx),
            keep,
            window,
            recent: VecDeque::with_capacity(window + 1),
            repeat: sampling.repeat_penalty,
            frequency: sampling.frequency_penalty,
            presence: sampling.presence_penalty,
            best: Vec::new(),
            in_window: vec![false; usize::try_from(n_vocab).unwrap_or(0)],
        }
    }

    /// Takes `tokens` into the penalties' window (a prompt), as if each had been chosen.
    pub fn accept_many(&mut self, tokens: &[LlamaToken]) {
        for &t in tokens {
            self.accept(t);
        }
    }

    fn accept(&mut self, t: LlamaToken) {
        self.chain.accept(t);
        if self.window > 0 {
            self.recent.push_back(t.0);
            if self.recent.len() > self.window {
                self.recent.pop_front();
            }
        }
    }

    /// The next token for `logits` (one per vocabulary token), taken into the window. None
    /// only when the chain selects nothing (an empty vocabulary).
    pub fn choose(&mut self, logits: &[f32]) -> Option<LlamaToken> {
        let candidates: Vec<LlamaTokenData> = match self.keep {
            Some(k) if k < logits.len() => {
                self.best_by_penalised_logit(logits, k);
                self.best.iter().map(|&(_, id)| LlamaTokenData::new(LlamaToken(id), logits[id as usize], 0.0)).collect()
            }
            _ => (0_i32..).zip(logits).map(|(id, &l)| LlamaTokenData::new(LlamaToken(id), l, 0.0)).collect(),
        };
        let mut array = LlamaTokenDataArray::from_iter(candidates, false);
        array.apply_sampler(&mut self.chain);
        let t = array.selected_token()?;
        self.accept(t);
        Some(t)
    }

    /// llama.cpp's repeat penalties of a token seen `count` times in the window.
    fn penalised(&self, logit: f32, count: u32) -> f32 {
        let l = if logit <= 0.0 { logit * self.repeat } else { logit / self.repeat };
        l - (count as f32 * self.frequency + self.presence)
    }

    /// Leaves in `self.best` the `k` (>= 1) tokens with the highest logits after the
    /// penalties, as (penalised logit, token).
    fn best_by_penalised_logit(&mut self, logits: &[f32], k: usize) {
        let mut counts: Vec<(i32, u32)> = Vec::with_capacity(self.recent.len());
        for &t in &self.recent {
            match counts.iter_mut().find(|(id, _)| *id == t) {
                Some((_, c)) => *c += 1,
                None => counts.push((t, 1)),
            }
        }
        for &(id, _) in &counts {
            if let Some(flag) = self.in_window.get_mut(id as usize) {
                *flag = true;
            }
        }
        let mut best = std::mem::take(&mut self.best);
        best.clear();
        best.reserve(4 * k);
        // the tokens outside the window, as they are: those under the k-th best kept so far are
        // dropped with one comparison
        let cap = 4 * k;
        let mut floor = f32::NEG_INFINITY;
        for (id, &l) in (0_i32..).zip(logits) {
            if l < floor || self.in_window.get(id as usize).copied().unwrap_or(false) {
                continue;
            }
            best.push((l, id));
            if best.len() >= cap {
                floor = keep_best(&mut best, k);
            }
        }
        for &(id, count) in &counts {
            if let Some(&l) = logits.get(id as usize) {
                best.push((self.penalised(l, count), id));
            }
            if let Some(flag) = self.in_window.get_mut(id as usize) {
                *flag = false;
            }
        }
        keep_best(&mut best, k);
        self.best = best;
    }
}

/// Keeps the `k` highest of `v` (by value, then the lower token on ties) and returns the lowest
/// value kept.
fn keep_best(v: &mut Vec<(f32, i32)>, k: usize) -> f32 {
    let order = |a: &(f32, i32), b: &(f32, i32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if v.len() > k {
        v.select_nth_unstable_by(k - 1, order);
        v.truncate(k);
    }
    v.iter().map(|x| x.0).fold(f32::INFINITY, f32::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_ollamas_with_a_fixed_seed() {
        let s = Sampling::default();
        assert_eq!((s.temperature, s.top_k, s.top_p, s.min_p), (0.8, 40, 0.9, 0.0));
        assert_eq!((s.repeat_penalty, s.repeat_last_n), (1.1, 64));
        assert_eq!((s.presence_penalty, s.frequency_penalty, s.seed), (0.0, 0.0, 42));
    }

    #[test]
    fn a_window_of_minus_one_is_the_whole_context() {
        let mut s = Sampling::default();
        assert_eq!(s.penalty_window(300), 64);
        s.repeat_last_n = -1;
        assert_eq!(s.penalty_window(300), 300);
        s.repeat_last_n = 0;
        assert_eq!(s.penalty_window(300), 0);
    }

    /// Runs `s`'s chain over `logits` after the tokens `seen`, `n` times, accepting each draw.
    fn draws(s: &Sampling, logits: &[f32], seen: &[i32], n: usize) -> Vec<i32> {
        let mut sampler = s.sampler(logits.len() as i32, 4096);
        sampler.accept_many(seen.iter().map(|&t| LlamaToken(t)));
        (0..n)
            .map(|_| {
                let data = logits.iter().enumerate().map(|(i, &l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0));
                let mut a = LlamaTokenDataArray::from_iter(data, false);
                a.apply_sampler(&mut sampler);
                let t = a.selected_token().expect("the chain selects a token");
                sampler.accept(t);
                t.0
            })
            .collect()
    }

    #[test]
    fn greedy_takes_the_most_likely_token_after_the_repeat_penalty() {
        let greedy = Sampling { temperature: 0.0, ..Sampling::default() };
        let logits = [1.0, 3.0, 2.9, 0.0];
        assert_eq!(draws(&greedy, &logits, &[], 1), [1]);
        // 3.0 / 1.1 < 2.9: a token seen in the window loses to the runner-up
        assert_eq!(draws(&greedy, &logits, &[1], 1), [2]);
        // outside the window it is not penalised
        let short = Sampling { repeat_last_n: 1, ..greedy.clone() };
        assert_eq!(draws(&short, &logits, &[1, 3], 1), [1]);
        let off = Sampling { repeat_last_n: 0, ..greedy };
        assert_eq!(draws(&off, &logits, &[1], 1), [1]);
    }

    #[test]
    fn the_same_seed_draws_the_same_tokens_and_another_seed_others() {
        let flat = vec![0.0f32; 1000];
        let s = Sampling { top_k: 0, top_p: 1.0, repeat_last_n: 0, ..Sampling::default() };
        let a = draws(&s, &flat, &[], 20);
        assert_eq!(a, draws(&s, &flat, &[], 20));
        assert_ne!(a, draws(&Sampling { seed: 43, ..s.clone() }, &flat, &[], 20));
        // top-k 40 keeps the draws among the 40 most likely tokens
        let ramp: Vec<f32> = (0..1000).map(|i| i as f32 / 100.0).collect();
        let k = Sampling { top_k: 40, top_p: 1.0, ..s };
        assert!(draws(&k, &ramp, &[], 50).iter().all(|&t| t >= 960), "top-k let a token below the 40 best through");
    }

    /// A pseudo-random logit per token (splitmix64), in about [-8, 8).
    fn logits(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                ((z >> 40) as f32 / (1u64 << 24) as f32) * 16.0 - 8.0
            })
            .collect()
    }

    #[test]
    fn the_chooser_draws_what_the_chain_draws_over_the_whole_vocabulary() {
        let cases = [
            Sampling::default(),
            Sampling { temperature: 0.0, ..Sampling::default() },
            Sampling { top_k: 5, top_p: 1.0, repeat_penalty: 0.5, presence_penalty: -1.5, ..Sampling::default() },
            Sampling { top_k: 40, frequency_penalty: 1.0, presence_penalty: 0.5, repeat_last_n: -1, seed: 7, ..Sampling::default() },
            Sampling { top_k: 0, top_p: 0.5, min_p: 0.05, ..Sampling::default() },
            Sampling { top_k: 3, repeat_penalty: 1.0, repeat_last_n: 0, ..Sampling::default() },
        ];
        for (i, s) in cases.iter().enumerate() {
            // steps whose logits favour the tokens already drawn, so the penalties decide
            let steps: Vec<Vec<f32>> = (0..60).map(|step| logits(3000, 1000 * i as u64 + step)).collect();
            let prompt: Vec<LlamaToken> = (0..20).map(|t| LlamaToken(t * 7)).collect();
            let mut chain = s.sampler(3000, 4096);
            chain.accept_many(prompt.iter().copied());
            let mut chooser = Chooser::new(s, 3000, 4096);
            chooser.accept_many(&prompt);
            let mut drawn: Vec<i32> = Vec::new();
            for (step, raw) in steps.iter().enumerate() {
                let mut l = raw.clone();
                for &t in drawn.iter().rev().take(8) {
                    l[t as usize] += 6.0;
                }
                let data = (0_i32..).zip(&l).map(|(id, &x)| LlamaTokenData::new(LlamaToken(id), x, 0.0));
                let mut a = LlamaTokenDataArray::from_iter(data, false);
                a.apply_sampler(&mut chain);
                let want = a.selected_token().expect("the chain selects a token");
                chain.accept(want);
                let got = chooser.choose(&l).expect("the chooser selects a token");
                assert_eq!(got, want, "case {i} step {step}: {s:?}");
                drawn.push(got.0);
            }
        }
    }

    #[test]
    fn the_largest_seed_is_not_llama_cpps_random_seed() {
        assert!(range::SEED.1 < i64::from(u32::MAX));
    }
}
