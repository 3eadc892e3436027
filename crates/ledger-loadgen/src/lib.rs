//! Realistic synthetic usage events, deterministic for a given seed.
//!
//! Tenants are Zipf-distributed (a few big spenders, a long tail), each tenant has teams and
//! projects, the model mix spans cheap and expensive models of several providers, and token
//! counts follow log-normal distributions with prompt-cache reads and writes and reasoning
//! tokens where the model family has them. On request a share of the events are resent
//! duplicates (same `event_id`) or invalid (each kind of rejection).

use chrono::{DateTime, Duration, Utc};
use ledger_core::UsageEvent;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Zipf};

/// One model of the mix: provider name (OpenTelemetry), model name and traits.
#[derive(Debug, Clone, Copy)]
pub struct ModelSpec {
    /// `gen_ai.provider.name`.
    pub provider: &'static str,
    /// The model name as the service sends it.
    pub model: &'static str,
    /// Relative share of calls.
    pub weight: u32,
    /// The model emits reasoning tokens.
    pub reasoning: bool,
    /// The provider reports cache writes (Anthropic-style explicit caching).
    pub cache_writes: bool,
}

/// The default model mix: every name is priced by the shipped catalog and by the earlier
/// 65-model `catalog/litellm-prices.json` (the same prices).
pub const MODEL_MIX: &[ModelSpec] = &[
    ModelSpec { provider: "openai", model: "gpt-4o-mini", weight: 30, reasoning: false, cache_writes: false },
    ModelSpec { provider: "openai", model: "gpt-4o", weight: 10, reasoning: false, cache_writes: false },
    ModelSpec { provider: "openai", model: "gpt-4.1-mini", weight: 10, reasoning: false, cache_writes: false },
    ModelSpec { provider: "openai", model: "o4-mini", weight: 5, reasoning: true, cache_writes: false },
    ModelSpec { provider: "openai", model: "gpt-5-mini", weight: 8, reasoning: true, cache_writes: false },
    ModelSpec { provider: "anthropic", model: "claude-sonnet-4-5", weight: 10, reasoning: false, cache_writes: true },
    ModelSpec { provider: "anthropic", model: "claude-haiku-4-5", weight: 10, reasoning: false, cache_writes: true },
    ModelSpec { provider: "gcp.gemini", model: "gemini-2.5-flash", weight: 8, reasoning: true, cache_writes: false },
    ModelSpec { provider: "gcp.gemini", model: "gemini-2.5-pro", weight: 3, reasoning: true, cache_writes: false },
    ModelSpec { provider: "deepseek", model: "deepseek-chat", weight: 4, reasoning: false, cache_writes: false },
    ModelSpec { provider: "mistral_ai", model: "mistral/mistral-large-latest", weight: 2, reasoning: false, cache_writes: false },
];

const TENANTS: &[&str] =
    &["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell", "cyberdyne", "soylent", "aperture"];
const TEAMS: &[&str] = &["search", "support", "growth", "platform", "research"];
const FEATURES: &[&str] = &["chat", "summarize", "classify", "extract", "agent"];

/// What kind of invalid event to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidKind {
    /// Cache parts exceed `input_tokens`.
    InconsistentTokens,
    /// A model no catalog knows.
    UnknownModel,
    /// A negative token count.
    NegativeTokens,
    /// Bytes that are not an event at all.
    Garbage,
}

/// One generated message.
#[derive(Debug, Clone)]
pub enum Synthetic {
    /// A new, valid event.
    Valid(UsageEvent),
    /// A resend of an earlier valid event (same `event_id` and content).
    Duplicate(UsageEvent),
    /// An event the processor must dead-letter (the event, or `None` for garbage bytes).
    Invalid(InvalidKind, Option<UsageEvent>),
}

impl Synthetic {
    /// The event, when the message is one.
    pub fn event(&self) -> Option<&UsageEvent> {
        match self {
            Synthetic::Valid(e) | Synthetic::Duplicate(e) => Some(e),
            Synthetic::Invalid(_, e) => e.as_ref(),
        }
    }
}

/// Settings of the generator.
#[derive(Debug, Clone)]
pub struct GeneratorOptions {
    /// RNG seed: the same seed yields the same events.
    pub seed: u64,
    /// Number of tenants (at most 12 named ones, then `tenant-N`).
    pub tenants: usize,
    /// Share of messages that resend an earlier event, in parts per million.
    pub duplicate_ppm: u32,
    /// Share of invalid messages, in parts per million.
    pub invalid_ppm: u32,
    /// Event times are spread over `[start, start + spread)`.
    pub start: DateTime<Utc>,
    /// Width of the event-time spread.
    pub spread: Duration,
    /// Prefix of event ids (keeps runs apart).
    pub id_prefix: String,
}

impl Default for GeneratorOptions {
    fn default() -> Self {
        GeneratorOptions {
            seed: 42,
            tenants: 8,
            duplicate_ppm: 0,
            invalid_ppm: 0,
            start: Utc::now() - Duration::minutes(10),
            spread: Duration::minutes(10),
            id_prefix: "syn".to_owned(),
        }
    }
}

/// An endless, deterministic stream of synthetic messages.
#[derive(Debug)]
pub struct Generator {
    opts: GeneratorOptions,
    rng: StdRng,
    tenant_dist: Zipf<f64>,
    input_dist: LogNormal<f64>,
    output_dist: LogNormal<f64>,
    total_weight: u32,
    seq: u64,
    recent: Vec<UsageEvent>,
}

impl Generator {
    /// A generator with the given options.
    pub fn new(opts: GeneratorOptions) -> Self {
        let tenants = opts.tenants.max(1);
        Generator {
            rng: StdRng::seed_from_u64(opts.seed),
            // Token and tenant distributions are statistics of the load, not money.
            tenant_dist: Zipf::new(tenants as u64, 1.1).expect("valid zipf parameters"),
            input_dist: LogNormal::new(7.0, 1.2).expect("valid log-normal parameters"),
            output_dist: LogNormal::new(5.5, 1.0).expect("valid log-normal parameters"),
            total_weight: MODEL_MIX.iter().map(|m| m.weight).sum(),
            seq: 0,
            recent: Vec::new(),
            opts,
        }
    }

    fn tenant_into(&mut self, out: &mut String) {
        let i = self.tenant_dist.sample(&mut self.rng) as usize - 1;
        out.clear();
        match TENANTS.get(i) {
            Some(t) => out.push_str(t),
            None => {
                out.push_str("tenant-");
                push_decimal(out, i as u64);
            }
        }
    }

    fn model(&mut self) -> ModelSpec {
        let mut pick = self.rng.gen_range(0..self.total_weight);
        for m in MODEL_MIX {
            if pick < m.weight {
                return *m;
            }
            pick -= m.weight;
        }
        MODEL_MIX[0]
    }

    /// A new valid event.
    pub fn valid_event(&mut self) -> UsageEvent {
        let mut e = blank_event();
        self.fill_valid_event(&mut e);
        e
    }

    /// A new valid event written over `e`, reusing the memory of its strings: the same event
    /// [`Generator::valid_event`] would return. A paced load generator builds 100,000 a second.
    pub fn fill_valid_event(&mut self, e: &mut UsageEvent) {
        self.seq += 1;
        self.tenant_into(&mut e.attribution.tenant_id);
        let spec = self.model();
        let team = TEAMS[self.rng.gen_range(0..TEAMS.len())];
        let input = (self.input_dist.sample(&mut self.rng) as i64).clamp(1, 200_000);
        let output = (self.output_dist.sample(&mut self.rng) as i64).clamp(1, 16_000);
        let cache_read = if self.rng.gen_bool(0.4) { input * self.rng.gen_range(0..80) / 100 } else { 0 };
        let (cache_creation, cache_creation_1h) = if spec.cache_writes && self.rng.gen_bool(0.2) {
            let w = (input - cache_read) * self.rng.gen_range(0..50) / 100;
            if self.rng.gen_bool(0.3) {
                (0, w)
            } else {
                (w, 0)
            }
        } else {
            (0, 0)
        };
        let reasoning = if spec.reasoning { output * self.rng.gen_range(0..70) / 100 } else { 0 };
        let spread_ms = self.opts.spread.num_milliseconds().max(1);
        let event_time = self.opts.start + Duration::milliseconds(self.rng.gen_range(0..spread_ms));
        let tier = match self.rng.gen_range(0..100) {
            0..=4 => Some("batch"),
            5..=6 => Some("priority"),
            _ => None,
        };
        // The strings are built by hand: `format!` was a tenth of a paced load generator's CPU.
        let project = self.rng.gen_range(1..4i32) as u64;
        set_joined(e.attribution.project.get_or_insert_with(String::new), &[team, "-"], project);
        let user = self.rng.gen_range(1..200i32) as u64;
        set_joined(e.attribution.user_id.get_or_insert_with(String::new), &["user-"], user);
        let key = self.rng.gen_range(1..4i32) as u64;
        set_joined(e.attribution.api_key_id.get_or_insert_with(String::new), &["key-", &e.attribution.tenant_id, "-"], key);
        set_joined(&mut e.event_id, &[&self.opts.id_prefix, "-"], self.opts.seed);
        e.event_id.push('-');
        push_decimal(&mut e.event_id, self.seq);
        e.event_time = event_time;
        set(e.attribution.team.get_or_insert_with(String::new), team);
        set(e.feature.get_or_insert_with(String::new), FEATURES[self.rng.gen_range(0..FEATURES.len())]);
        set(e.environment.get_or_insert_with(String::new), if self.rng.gen_bool(0.9) { "prod" } else { "staging" });
        let region = if self.rng.gen_bool(0.5) { "eu" } else { "us" };
        let only_region = e.tags.len() == 1;
        match e.tags.get_mut("region") {
            Some(v) if only_region => set(v, region),
            _ => e.tags = [("region".to_owned(), region.to_owned())].into(),
        }
        set(&mut e.provider, spec.provider);
        set(&mut e.operation, "chat");
        set(&mut e.request_model, spec.model);
        e.response_model = None;
        e.routed_from_model = None;
        e.input_tokens = input;
        e.cache_read_input_tokens = cache_read;
        e.cache_creation_input_tokens = cache_creation;
        e.cache_creation_1h_input_tokens = cache_creation_1h;
        e.output_tokens = output;
        e.reasoning_output_tokens = reasoning;
        match tier.filter(|_| spec.provider == "openai") {
            Some(t) => set(e.service_tier.get_or_insert_with(String::new), t),
            None => e.service_tier = None,
        }
        e.provided_cost_usd = None;
        e.latency_ms = Some(self.rng.gen_range(200..20_000));
        set(&mut e.status, "ok");
        e.response_id = None;
        e.trace_id = None;
    }

    fn invalid(&mut self) -> Synthetic {
        let mut e = self.valid_event();
        e.event_id = format!("{}-bad", e.event_id);
        match self.rng.gen_range(0..4) {
            0 => {
                e.cache_read_input_tokens = e.input_tokens + 1;
                Synthetic::Invalid(InvalidKind::InconsistentTokens, Some(e))
            }
            1 => {
                e.request_model = "no-such-model-xyz".to_owned();
                Synthetic::Invalid(InvalidKind::UnknownModel, Some(e))
            }
            2 => {
                e.output_tokens = -5;
                Synthetic::Invalid(InvalidKind::NegativeTokens, Some(e))
            }
            _ => Synthetic::Invalid(InvalidKind::Garbage, None),
        }
    }

    /// The next message.
    pub fn next_message(&mut self) -> Synthetic {
        let mut message = Synthetic::Valid(blank_event());
        self.next_message_into(&mut message);
        message
    }

    /// The next message written over `message`: the same as [`Generator::next_message`], and
    /// a new valid event after a valid one reuses its memory.
    pub fn next_message_into(&mut self, message: &mut Synthetic) {
        let roll = self.rng.gen_range(0..1_000_000u32);
        if roll < self.opts.invalid_ppm {
            *message = self.invalid();
            return;
        }
        if roll < self.opts.invalid_ppm + self.opts.duplicate_ppm && !self.recent.is_empty() {
            let i = self.rng.gen_range(0..self.recent.len());
            *message = Synthetic::Duplicate(self.recent[i].clone());
            return;
        }
        if !matches!(message, Synthetic::Valid(_)) {
            *message = Synthetic::Valid(blank_event());
        }
        let Synthetic::Valid(e) = message else { return };
        self.fill_valid_event(e);
        if self.opts.duplicate_ppm > 0 {
            if self.recent.len() < 1024 {
                self.recent.push(e.clone());
            } else {
                let i = self.rng.gen_range(0..self.recent.len());
                self.recent[i] = e.clone();
            }
        }
    }
}

/// An event with no id, tenant or model, to be filled by [`Generator::fill_valid_event`].
fn blank_event() -> UsageEvent {
    UsageEvent::new(String::new(), DateTime::UNIX_EPOCH, String::new(), String::new(), String::new())
}

fn set(s: &mut String, value: &str) {
    s.clear();
    s.push_str(value);
}

/// `out` becomes `parts` concatenated, then `n` in decimal.
fn set_joined(out: &mut String, parts: &[&str], n: u64) {
    out.clear();
    for p in parts {
        out.push_str(p);
    }
    push_decimal(out, n);
}

fn push_decimal(s: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    s.extend(digits[at..].iter().map(|&d| char::from(d)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_built_as_format_would() {
        for n in [0u64, 7, 10, 199, 1234567890, u64::MAX] {
            let mut s = "stale".to_owned();
            set_joined(&mut s, &["key-", "acme", "-"], n);
            assert_eq!(s, format!("key-acme-{n}"));
        }
        let mut g = Generator::new(GeneratorOptions { seed: 9, id_prefix: "run".into(), ..GeneratorOptions::default() });
        let e = g.valid_event();
        assert_eq!(e.event_id, "run-9-1");
        let team = e.attribution.team.as_deref().unwrap();
        assert!(e
            .attribution
            .project
            .as_deref()
            .unwrap()
            .strip_prefix(&format!("{team}-"))
            .is_some_and(|n| ("1"..="3").contains(&n)));
        assert!(e.attribution.api_key_id.as_deref().unwrap().starts_with(&format!("key-{}-", e.attribution.tenant_id)));
    }

    #[test]
    fn same_seed_same_events_and_all_valid() {
        let opts = GeneratorOptions { start: DateTime::UNIX_EPOCH, ..GeneratorOptions::default() };
        let mut a = Generator::new(opts.clone());
        let mut b = Generator::new(opts);
        for _ in 0..2000 {
            let (x, y) = (a.valid_event(), b.valid_event());
            assert_eq!(x, y);
            x.validate().unwrap();
        }
    }

    #[test]
    fn a_reused_message_is_the_message_a_fresh_one_would_be() {
        let opts = GeneratorOptions {
            duplicate_ppm: 50_000,
            invalid_ppm: 20_000,
            tenants: 20,
            start: DateTime::UNIX_EPOCH,
            ..GeneratorOptions::default()
        };
        let mut fresh = Generator::new(opts.clone());
        let mut reusing = Generator::new(opts);
        let mut slot = Synthetic::Valid(blank_event());
        let mut kinds = [0; 3];
        for _ in 0..20_000 {
            let expected = fresh.next_message();
            reusing.next_message_into(&mut slot);
            kinds[match &expected {
                Synthetic::Valid(_) => 0,
                Synthetic::Duplicate(_) => 1,
                Synthetic::Invalid(..) => 2,
            }] += 1;
            match (&expected, &slot) {
                (Synthetic::Valid(a), Synthetic::Valid(b)) | (Synthetic::Duplicate(a), Synthetic::Duplicate(b)) => {
                    assert_eq!(a, b)
                }
                (Synthetic::Invalid(k, a), Synthetic::Invalid(l, b)) => assert_eq!((k, a), (l, b)),
                _ => panic!("{expected:?} != {slot:?}"),
            }
        }
        assert!(kinds.iter().all(|&n| n > 100), "{kinds:?}");
    }

    #[test]
    fn shares_of_duplicates_and_invalid_are_respected() {
        let mut g =
            Generator::new(GeneratorOptions { duplicate_ppm: 50_000, invalid_ppm: 10_000, ..GeneratorOptions::default() });
        let (mut dup, mut bad) = (0, 0);
        for _ in 0..100_000 {
            match g.next_message() {
                Synthetic::Duplicate(_) => dup += 1,
                Synthetic::Invalid(..) => bad += 1,
                Synthetic::Valid(e) => e.validate().map(|_| ()).unwrap(),
            }
        }
        assert!((4_000..6_000).contains(&dup), "{dup}");
        assert!((700..1_300).contains(&bad), "{bad}");
    }
}

#[cfg(test)]
mod token_mix_tests {
    use super::*;

    #[test]
    fn the_mix_has_cache_reads_writes_of_both_lifetimes_and_reasoning() {
        let mut g = Generator::new(GeneratorOptions::default());
        let (mut reads, mut writes, mut writes_1h, mut reasoning) = (0, 0, 0, 0);
        for _ in 0..20_000 {
            let e = g.valid_event();
            reads += usize::from(e.cache_read_input_tokens > 0);
            writes += usize::from(e.cache_creation_input_tokens > 0);
            writes_1h += usize::from(e.cache_creation_1h_input_tokens > 0);
            reasoning += usize::from(e.reasoning_output_tokens > 0);
        }
        assert!(reads > 4_000 && writes > 100 && writes_1h > 50 && reasoning > 2_000, "{reads} {writes} {writes_1h} {reasoning}");
    }
}
