//! How the next token is chosen: Ollama's sampling options, their ranges, and the llama.cpp
//! sampler chain they make (in llama.cpp's own order: penalties, top-k, top-p, min-p,
//! temperature, then a seeded draw; greedy at temperature 0).

use llama_cpp_2::sampling::LlamaSampler;

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
        use llama_cpp_2::token::data::LlamaTokenData;
        use llama_cpp_2::token::data_array::LlamaTokenDataArray;
        use llama_cpp_2::token::LlamaToken;
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

    #[test]
    fn the_largest_seed_is_not_llama_cpps_random_seed() {
        assert!(range::SEED.1 < i64::from(u32::MAX));
    }
}
