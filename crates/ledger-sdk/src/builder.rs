//! Typed construction of usage events, one constructor per provider usage convention.
//!
//! The ledger's token fields are inclusive (docs/pricing.md): `input_tokens` counts every prompt
//! token including cache reads and writes, `output_tokens` every completion token including
//! reasoning. Providers report differently; each constructor here converts one provider's
//! `usage` object so that callers never do this arithmetic by hand:
//!
//! | provider | reported | normalized |
//! |---|---|---|
//! | OpenAI (chat completions and responses) | `prompt_tokens` includes `cached_tokens`; `completion_tokens` includes `reasoning_tokens` | taken as is |
//! | Anthropic | `input_tokens` excludes `cache_read_input_tokens` and `cache_creation_input_tokens` | input = input + cache read + cache creation |
//! | Google Gemini | `promptTokenCount` includes `cachedContentTokenCount`; `candidatesTokenCount` excludes `thoughtsTokenCount`; `toolUsePromptTokenCount` is extra prompt | input = prompt + tool use; output = candidates + thoughts |
//! | AWS Bedrock Converse | `inputTokens` excludes `cacheReadInputTokens` and `cacheWriteInputTokens` | input = input + cache read + cache write |

use chrono::{DateTime, Utc};
use ledger_core::{Money, UsageEvent};

use crate::SdkError;

/// OpenAI `usage` (chat completions or responses API).
///
/// Chat completions: `prompt_tokens`, `completion_tokens`,
/// `prompt_tokens_details.cached_tokens`, `completion_tokens_details.reasoning_tokens`.
/// Responses: `input_tokens`, `output_tokens`, `input_tokens_details.cached_tokens`,
/// `output_tokens_details.reasoning_tokens`. Both are inclusive totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenAiUsage {
    /// `prompt_tokens` (or `input_tokens`): every prompt token, cached ones included.
    pub prompt_tokens: u64,
    /// `completion_tokens` (or `output_tokens`): every completion token, reasoning included.
    pub completion_tokens: u64,
    /// `prompt_tokens_details.cached_tokens`: part of `prompt_tokens` read from the cache.
    pub cached_tokens: u64,
    /// `completion_tokens_details.reasoning_tokens`: part of `completion_tokens`.
    pub reasoning_tokens: u64,
}

/// Anthropic Messages API `usage`.
///
/// `input_tokens` counts only the prompt tokens after the last cache breakpoint; cache reads
/// and writes are reported beside it, not inside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnthropicUsage {
    /// `input_tokens`: uncached prompt tokens only.
    pub input_tokens: u64,
    /// `output_tokens`: every output token (extended thinking included).
    pub output_tokens: u64,
    /// `cache_read_input_tokens`.
    pub cache_read_input_tokens: u64,
    /// `cache_creation_input_tokens`: every cache write (both lifetimes).
    pub cache_creation_input_tokens: u64,
    /// `cache_creation.ephemeral_1h_input_tokens`: the part of `cache_creation_input_tokens`
    /// written with the 1 hour lifetime (0 when the response has no breakdown).
    pub cache_creation_1h_input_tokens: u64,
}

/// Google Gemini `usageMetadata`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeminiUsage {
    /// `promptTokenCount`: prompt tokens, cached content included.
    pub prompt_token_count: u64,
    /// `candidatesTokenCount`: response tokens, thoughts excluded.
    pub candidates_token_count: u64,
    /// `cachedContentTokenCount`: part of `promptTokenCount` served from the context cache.
    pub cached_content_token_count: u64,
    /// `thoughtsTokenCount`: thinking tokens, billed as output, reported beside the candidates.
    pub thoughts_token_count: u64,
    /// `toolUsePromptTokenCount`: prompt tokens of tool results, reported beside `promptTokenCount`.
    pub tool_use_prompt_token_count: u64,
}

/// AWS Bedrock Converse `usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BedrockUsage {
    /// `inputTokens`: uncached prompt tokens only.
    pub input_tokens: u64,
    /// `outputTokens`.
    pub output_tokens: u64,
    /// `cacheReadInputTokens`.
    pub cache_read_input_tokens: u64,
    /// `cacheWriteInputTokens`.
    pub cache_write_input_tokens: u64,
}

/// Token counts in the ledger's inclusive convention (docs/pricing.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NormalizedTokens {
    /// Every prompt token, cache reads and writes included.
    pub input: u64,
    /// Part of `input` read from a cache.
    pub cache_read: u64,
    /// Part of `input` written to a cache (5 minute lifetime).
    pub cache_creation: u64,
    /// Part of `input` written to a cache (1 hour lifetime).
    pub cache_creation_1h: u64,
    /// Every completion token, reasoning included.
    pub output: u64,
    /// Part of `output` spent on reasoning.
    pub reasoning: u64,
}

fn add(field: &'static str, parts: &[u64]) -> Result<u64, SdkError> {
    parts.iter().try_fold(0u64, |acc, p| acc.checked_add(*p)).ok_or_else(|| SdkError::invalid(field, "token counts overflow"))
}

impl NormalizedTokens {
    /// OpenAI reports inclusive totals: nothing to add.
    pub fn from_openai(u: &OpenAiUsage) -> Result<Self, SdkError> {
        Ok(NormalizedTokens {
            input: u.prompt_tokens,
            cache_read: u.cached_tokens,
            cache_creation: 0,
            cache_creation_1h: 0,
            output: u.completion_tokens,
            reasoning: u.reasoning_tokens,
        })
    }

    /// Anthropic reports cache reads and writes outside `input_tokens`.
    pub fn from_anthropic(u: &AnthropicUsage) -> Result<Self, SdkError> {
        let cache_creation_5m = u.cache_creation_input_tokens.checked_sub(u.cache_creation_1h_input_tokens).ok_or_else(|| {
            SdkError::invalid(
                "cache_creation_1h_input_tokens",
                format!(
                    "the 1 hour cache writes ({}) exceed cache_creation_input_tokens ({}), which includes them",
                    u.cache_creation_1h_input_tokens, u.cache_creation_input_tokens
                ),
            )
        })?;
        Ok(NormalizedTokens {
            input: add("input_tokens", &[u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens])?,
            cache_read: u.cache_read_input_tokens,
            cache_creation: cache_creation_5m,
            cache_creation_1h: u.cache_creation_1h_input_tokens,
            output: u.output_tokens,
            reasoning: 0,
        })
    }

    /// Gemini includes cached content in the prompt count and reports thoughts beside the
    /// candidates.
    pub fn from_gemini(u: &GeminiUsage) -> Result<Self, SdkError> {
        Ok(NormalizedTokens {
            input: add("input_tokens", &[u.prompt_token_count, u.tool_use_prompt_token_count])?,
            cache_read: u.cached_content_token_count,
            cache_creation: 0,
            cache_creation_1h: 0,
            output: add("output_tokens", &[u.candidates_token_count, u.thoughts_token_count])?,
            reasoning: u.thoughts_token_count,
        })
    }

    /// Bedrock reports cache reads and writes outside `inputTokens`.
    pub fn from_bedrock(u: &BedrockUsage) -> Result<Self, SdkError> {
        Ok(NormalizedTokens {
            input: add("input_tokens", &[u.input_tokens, u.cache_read_input_tokens, u.cache_write_input_tokens])?,
            cache_read: u.cache_read_input_tokens,
            cache_creation: u.cache_write_input_tokens,
            cache_creation_1h: 0,
            output: u.output_tokens,
            reasoning: 0,
        })
    }
}

/// Builds a [`UsageEvent`]: start from the provider's usage object, add attribution, `build`.
///
/// ```
/// use ledger_sdk::{EventBuilder, AnthropicUsage};
/// let event = EventBuilder::anthropic(
///     "claude-sonnet-4-5",
///     AnthropicUsage { input_tokens: 100, output_tokens: 50, cache_read_input_tokens: 900, ..Default::default() },
/// )
/// .tenant("acme")
/// .team("search")
/// .build()
/// .unwrap();
/// assert_eq!(event.input_tokens, 1000); // inclusive: 100 uncached + 900 cache reads
/// assert_eq!(event.cache_read_input_tokens, 900);
/// ```
#[derive(Debug, Clone)]
pub struct EventBuilder {
    event: UsageEvent,
    tokens: Result<NormalizedTokens, SdkError>,
}

impl EventBuilder {
    /// An event of `provider` (OpenTelemetry `gen_ai.provider.name`) for `request_model` with
    /// token counts already in the ledger's inclusive convention.
    pub fn new(provider: impl Into<String>, request_model: impl Into<String>, tokens: NormalizedTokens) -> Self {
        Self::with_tokens(provider.into(), request_model.into(), Ok(tokens))
    }

    fn with_tokens(provider: String, request_model: String, tokens: Result<NormalizedTokens, SdkError>) -> Self {
        EventBuilder {
            event: UsageEvent::new(String::new(), DateTime::<Utc>::UNIX_EPOCH, String::new(), provider, request_model),
            tokens,
        }
    }

    /// An OpenAI call (provider `openai`).
    pub fn openai(request_model: impl Into<String>, usage: OpenAiUsage) -> Self {
        Self::with_tokens("openai".to_owned(), request_model.into(), NormalizedTokens::from_openai(&usage))
    }

    /// An Anthropic call (provider `anthropic`).
    pub fn anthropic(request_model: impl Into<String>, usage: AnthropicUsage) -> Self {
        Self::with_tokens("anthropic".to_owned(), request_model.into(), NormalizedTokens::from_anthropic(&usage))
    }

    /// A Google Gemini call (provider `gcp.gemini`; use [`EventBuilder::provider`] for
    /// `gcp.vertex_ai`).
    pub fn gemini(request_model: impl Into<String>, usage: GeminiUsage) -> Self {
        Self::with_tokens("gcp.gemini".to_owned(), request_model.into(), NormalizedTokens::from_gemini(&usage))
    }

    /// An AWS Bedrock Converse call (provider `aws.bedrock`).
    pub fn bedrock(request_model: impl Into<String>, usage: BedrockUsage) -> Self {
        Self::with_tokens("aws.bedrock".to_owned(), request_model.into(), NormalizedTokens::from_bedrock(&usage))
    }

    /// Overrides the provider name.
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.event.provider = provider.into();
        self
    }
    /// The idempotency key; default: a new UUIDv7 of the event time. Set it when the same call may be reported twice.
    pub fn event_id(mut self, id: impl Into<String>) -> Self {
        self.event.event_id = id.into();
        self
    }
    /// When the call happened; default: now.
    pub fn event_time(mut self, t: DateTime<Utc>) -> Self {
        self.event.event_time = t;
        self
    }
    /// The tenant billed (required; the Kafka key).
    pub fn tenant(mut self, tenant_id: impl Into<String>) -> Self {
        self.event.attribution.tenant_id = tenant_id.into();
        self
    }
    /// Team within the tenant.
    pub fn team(mut self, team: impl Into<String>) -> Self {
        self.event.attribution.team = Some(team.into());
        self
    }
    /// Project within the team.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.event.attribution.project = Some(project.into());
        self
    }
    /// End user.
    pub fn user(mut self, user_id: impl Into<String>) -> Self {
        self.event.attribution.user_id = Some(user_id.into());
        self
    }
    /// API key the call was made with.
    pub fn api_key_id(mut self, api_key_id: impl Into<String>) -> Self {
        self.event.attribution.api_key_id = Some(api_key_id.into());
        self
    }
    /// Product feature.
    pub fn feature(mut self, feature: impl Into<String>) -> Self {
        self.event.feature = Some(feature.into());
        self
    }
    /// Deployment environment.
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.event.environment = Some(environment.into());
        self
    }
    /// A free-form tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.event.tags.insert(key.into(), value.into());
        self
    }
    /// OpenTelemetry `gen_ai.operation.name`; default `chat`.
    pub fn operation(mut self, operation: impl Into<String>) -> Self {
        self.event.operation = operation.into();
        self
    }
    /// The model that served the request (e.g. the dated snapshot the provider reports).
    pub fn response_model(mut self, model: impl Into<String>) -> Self {
        self.event.response_model = Some(model.into());
        self
    }
    /// The model the application asked for before a router rerouted it to the request model;
    /// the ledger then records the savings.
    pub fn routed_from_model(mut self, model: impl Into<String>) -> Self {
        self.event.routed_from_model = Some(model.into());
        self
    }
    /// Provider service tier (`batch`, `priority`, `flex`, ...).
    pub fn service_tier(mut self, tier: impl Into<String>) -> Self {
        self.event.service_tier = Some(tier.into());
        self
    }
    /// What the provider billed, when known.
    pub fn provided_cost_usd(mut self, cost: Money) -> Self {
        self.event.provided_cost_usd = Some(cost);
        self
    }
    /// Call latency.
    pub fn latency_ms(mut self, ms: i64) -> Self {
        self.event.latency_ms = Some(ms);
        self
    }
    /// Outcome of the call; default `ok`.
    pub fn status(mut self, status: impl Into<String>) -> Self {
        self.event.status = status.into();
        self
    }
    /// Provider response id.
    pub fn response_id(mut self, id: impl Into<String>) -> Self {
        self.event.response_id = Some(id.into());
        self
    }
    /// Distributed trace id.
    pub fn trace_id(mut self, id: impl Into<String>) -> Self {
        self.event.trace_id = Some(id.into());
        self
    }

    /// The event, validated as the processor will validate it (required fields, token parts
    /// within their totals). Fills a UUIDv7 `event_id` and the current time when not set.
    pub fn build(self) -> Result<UsageEvent, SdkError> {
        let t = self.tokens?;
        let mut e = self.event;
        let signed = |field: &'static str, v: u64| {
            i64::try_from(v).map_err(|_| SdkError::invalid(field, format!("{v} does not fit the schema's long")))
        };
        e.input_tokens = signed("input_tokens", t.input)?;
        e.cache_read_input_tokens = signed("cache_read_input_tokens", t.cache_read)?;
        e.cache_creation_input_tokens = signed("cache_creation_input_tokens", t.cache_creation)?;
        e.cache_creation_1h_input_tokens = signed("cache_creation_1h_input_tokens", t.cache_creation_1h)?;
        e.output_tokens = signed("output_tokens", t.output)?;
        e.reasoning_output_tokens = signed("reasoning_output_tokens", t.reasoning)?;
        if e.event_time == DateTime::<Utc>::UNIX_EPOCH {
            e.event_time = Utc::now();
        }
        if e.event_id.is_empty() {
            e.event_id = uuid_v7(e.event_time).to_string();
        }
        e.validate().map_err(SdkError::Rejected)?;
        Ok(e)
    }
}

/// A UUIDv7 of `time` (48-bit Unix milliseconds, 74 random bits).
///
/// Random bits come from the thread-local CSPRNG (`rand::thread_rng`, seeded once from the OS)
/// rather than from a `getrandom` system call per id, which would cost the caller most of a
/// microsecond per event.
fn uuid_v7(time: DateTime<Utc>) -> uuid::Uuid {
    use rand::RngCore;
    let mut random = [0u8; 10];
    rand::thread_rng().fill_bytes(&mut random);
    let millis = u64::try_from(time.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tokens(e: &UsageEvent) -> [i64; 6] {
        [
            e.input_tokens,
            e.cache_read_input_tokens,
            e.cache_creation_input_tokens,
            e.cache_creation_1h_input_tokens,
            e.output_tokens,
            e.reasoning_output_tokens,
        ]
    }

    #[test]
    fn openai_is_taken_as_reported() {
        let u = OpenAiUsage { prompt_tokens: 1000, completion_tokens: 300, cached_tokens: 800, reasoning_tokens: 200 };
        let e = EventBuilder::openai("o4-mini", u).tenant("acme").build().unwrap();
        assert_eq!(tokens(&e), [1000, 800, 0, 0, 300, 200]);
        assert_eq!(e.provider, "openai");
        let id = uuid::Uuid::parse_str(&e.event_id).unwrap();
        assert_eq!(id.get_version_num(), 7);
        let (secs, _) = id.get_timestamp().unwrap().to_unix();
        assert_eq!(secs, e.event_time.timestamp() as u64, "the id's timestamp is the event time");
        let other = EventBuilder::openai("o4-mini", u).tenant("acme").build().unwrap();
        assert_ne!(other.event_id, e.event_id);
    }

    #[test]
    fn anthropic_cache_tokens_are_added_to_input() {
        let u = AnthropicUsage {
            input_tokens: 50,
            output_tokens: 70,
            cache_read_input_tokens: 1000,
            cache_creation_input_tokens: 300,
            cache_creation_1h_input_tokens: 100,
        };
        let e = EventBuilder::anthropic("claude-sonnet-4-5", u).tenant("acme").build().unwrap();
        assert_eq!(tokens(&e), [1350, 1000, 200, 100, 70, 0]);
    }

    #[test]
    fn anthropic_1h_writes_beyond_total_are_an_error() {
        let u = AnthropicUsage { cache_creation_input_tokens: 10, cache_creation_1h_input_tokens: 11, ..Default::default() };
        let err = EventBuilder::anthropic("claude-haiku-4-5", u).tenant("acme").build().unwrap_err();
        assert!(err.to_string().contains("cache_creation_1h_input_tokens"), "{err}");
    }

    #[test]
    fn gemini_thoughts_are_added_to_output() {
        let u = GeminiUsage {
            prompt_token_count: 2000,
            candidates_token_count: 100,
            cached_content_token_count: 1500,
            thoughts_token_count: 400,
            tool_use_prompt_token_count: 10,
        };
        let e = EventBuilder::gemini("gemini-2.5-pro", u).tenant("acme").build().unwrap();
        assert_eq!(tokens(&e), [2010, 1500, 0, 0, 500, 400]);
        assert_eq!(e.provider, "gcp.gemini");
    }

    #[test]
    fn bedrock_cache_tokens_are_added_to_input() {
        let u = BedrockUsage { input_tokens: 10, output_tokens: 20, cache_read_input_tokens: 30, cache_write_input_tokens: 40 };
        let e = EventBuilder::bedrock("anthropic.claude-3-5-haiku-20241022-v1:0", u).tenant("acme").build().unwrap();
        assert_eq!(tokens(&e), [80, 30, 40, 0, 20, 0]);
        assert_eq!(e.provider, "aws.bedrock");
    }

    #[test]
    fn openai_inconsistent_usage_and_missing_tenant_are_rejected() {
        let u = OpenAiUsage { prompt_tokens: 10, cached_tokens: 11, ..Default::default() };
        let err = EventBuilder::openai("gpt-4o", u).tenant("acme").build().unwrap_err();
        assert!(matches!(err, SdkError::Rejected(_)), "{err}");
        let err = EventBuilder::openai("gpt-4o", OpenAiUsage::default()).build().unwrap_err();
        assert!(err.to_string().contains("tenant_id"), "{err}");
    }

    #[test]
    fn explicit_id_time_and_routing_are_kept() {
        let t = DateTime::parse_from_rfc3339("2026-11-01T12:00:00Z").unwrap().with_timezone(&Utc);
        let e = EventBuilder::openai("gpt-4o-mini", OpenAiUsage::default())
            .tenant("acme")
            .event_id("call-1")
            .event_time(t)
            .routed_from_model("gpt-4o")
            .build()
            .unwrap();
        assert_eq!((e.event_id.as_str(), e.event_time, e.routed_from_model.as_deref()), ("call-1", t, Some("gpt-4o")));
    }

    proptest! {
        /// Whatever a provider reports (consistently), the ledger sees the same number of
        /// billable prompt and completion tokens, and the event validates.
        #[test]
        fn every_convention_preserves_billable_tokens(
            a in 0u64..1_000_000, b in 0u64..1_000_000, c in 0u64..1_000_000, d in 0u64..1_000_000, f in 0u64..1_000_000,
        ) {
            let anthropic = AnthropicUsage {
                input_tokens: a, output_tokens: b, cache_read_input_tokens: c,
                cache_creation_input_tokens: d, cache_creation_1h_input_tokens: d / 3,
            };
            let e = EventBuilder::anthropic("m", anthropic).tenant("t").build().unwrap();
            prop_assert_eq!(e.input_tokens as u64, a + c + d);
            prop_assert_eq!((e.input_tokens - e.cache_read_input_tokens - e.cache_creation_input_tokens - e.cache_creation_1h_input_tokens) as u64, a);

            let gemini = GeminiUsage {
                prompt_token_count: a + c, candidates_token_count: b, cached_content_token_count: c,
                thoughts_token_count: d, tool_use_prompt_token_count: f,
            };
            let e = EventBuilder::gemini("m", gemini).tenant("t").build().unwrap();
            prop_assert_eq!((e.input_tokens - e.cache_read_input_tokens) as u64, a + f);
            prop_assert_eq!((e.output_tokens - e.reasoning_output_tokens) as u64, b);

            let bedrock = BedrockUsage { input_tokens: a, output_tokens: b, cache_read_input_tokens: c, cache_write_input_tokens: d };
            let e = EventBuilder::bedrock("m", bedrock).tenant("t").build().unwrap();
            prop_assert_eq!((e.input_tokens - e.cache_read_input_tokens - e.cache_creation_input_tokens) as u64, a);

            let openai = OpenAiUsage { prompt_tokens: a + c, completion_tokens: b + d, cached_tokens: c, reasoning_tokens: d };
            let e = EventBuilder::openai("m", openai).tenant("t").build().unwrap();
            prop_assert_eq!((e.input_tokens - e.cache_read_input_tokens) as u64, a);
            prop_assert_eq!((e.output_tokens - e.reasoning_output_tokens) as u64, b);
        }
    }
}
