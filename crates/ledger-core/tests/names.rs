//! docs/pricing.md "Which entry prices an event", step 2 with its aliases, and the local pricing
//! rules (aliases and overrides).

mod common;

use common::{at, catalog, io};
use ledger_core::catalog::{LookupStep, PricingRules};
use ledger_core::event::RejectReason;
use ledger_core::EventTime;

const NAMES: &str = r#"{
  "gpt-x": {"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06},
  "gemini/gem-1": {"input_cost_per_token": 2e-06, "output_cost_per_token": 2e-06},
  "vertex_ai/gem-1": {"input_cost_per_token": 3e-06, "output_cost_per_token": 3e-06},
  "anthropic.claude-z-20250514-v1:0": {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05},
  "global.anthropic.claude-z-20250514-v1:0": {"input_cost_per_token": 9e-06, "output_cost_per_token": 9e-06},
  "us.anthropic.claude-w-v1:0": {"input_cost_per_token": 3.3e-06, "output_cost_per_token": 1.65e-05},
  "global.anthropic.claude-w-v2": {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05},
  "global.anthropic.claude-w-v1:1": {"input_cost_per_token": 4e-06, "output_cost_per_token": 1.5e-05},
  "meta.llama-9-v1:0": {"input_cost_per_token": 5e-07, "output_cost_per_token": 5e-07},
  "claude-q": {"input_cost_per_token": 1e-06, "output_cost_per_token": 5e-06},
  "xai/grok-9": {"litellm_provider": "xai", "input_cost_per_token": 2e-06, "output_cost_per_token": 1e-05},
  "azure/gpt-x": {"input_cost_per_token": 1.1e-06, "output_cost_per_token": 1.1e-06}
}"#;

fn found(c: &ledger_core::Catalog, model: &str, provider: &str) -> Option<(String, LookupStep)> {
    c.find(model, provider, EventTime::from_datetime(at("2026-11-01T00:00:00Z"))).map(|f| (f.entry.key().to_string(), f.step))
}

#[test]
fn aliases_apply_in_the_documented_order_only_after_the_exact_rules() {
    let c = catalog(NAMES);
    let k = |model: &str, provider: &str| found(&c, model, provider);
    let is = |key: &str, step| Some((key.to_owned(), step));
    // 2.1 first: an exact key wins over every alias
    assert_eq!(k("gpt-x", "azure.ai.openai"), is("gpt-x", LookupStep::Exact));
    // 2.5: the OpenTelemetry provider's LiteLLM prefix
    assert_eq!(k("gem-1", "gcp.gemini"), is("gemini/gem-1", LookupStep::ProviderPrefix));
    assert_eq!(k("gem-1", "gcp.vertex_ai"), is("vertex_ai/gem-1", LookupStep::ProviderPrefix));
    assert_eq!(k("grok-9", "x_ai"), is("xai/grok-9", LookupStep::ProviderPrefix));
    assert_eq!(k("gem-1", "gcp.gen_ai"), None);
    // 2.6: a Bedrock cross-region prefix dropped
    assert_eq!(k("eu.meta.llama-9-v1:0", "aws.bedrock"), is("meta.llama-9-v1:0", LookupStep::BedrockRegion));
    assert_eq!(k("jp.meta.llama-9-v1:0", "aws.bedrock"), None);
    // 2.7: an Anthropic name finds its unregioned Bedrock id before the global one ...
    assert_eq!(k("claude-z-20250514", "anthropic"), is("anthropic.claude-z-20250514-v1:0", LookupStep::AnthropicBedrockId));
    // ... the global ids by version (v1:1 before v2 because 1 < 2), never a regional one
    assert_eq!(k("claude-w", "anthropic"), is("global.anthropic.claude-w-v1:1", LookupStep::AnthropicBedrockId));
    assert_eq!(k("claude-z-20250514", "openai"), None);
    // 2.8: the undated name of a dated one; an undated name never finds a dated entry
    assert_eq!(k("claude-q-20260101", "anthropic"), is("claude-q", LookupStep::Undated));
    assert_eq!(k("gpt-x-2026-01-01", "openai"), is("gpt-x", LookupStep::Undated));
    assert_eq!(k("gem-1@20260101", "gcp.gemini"), is("gemini/gem-1", LookupStep::Undated));
    assert_eq!(k("claude-z", "anthropic"), None);
    assert_eq!(k("gpt-x-20261301", "openai"), None);
}

const RULES: &str = r#"
[aliases]
"chat-prod" = "gpt-x"
"nowhere" = "no-such-key"

[aliases_by_provider."azure.ai.openai"]
"chat-prod" = "azure/gpt-x"

[[overrides]]
id = "acme-azure"
tenant = "acme"
provider = "azure.ai.openai"
effective_from = "2026-01-01T00:00:00Z"
effective_to = "2027-01-01T00:00:00Z"
multiplier = "0.5"

[[overrides]]
id = "acme-azure-gpt-x"
tenant = "acme"
model = "azure/gpt-x"
effective_from = "2026-06-01T00:00:00Z"
multiplier = "0.1"

[[overrides]]
id = "onprem"
model = "llama-onprem"
effective_from = "2026-01-01T00:00:00Z"
prices = { input_cost_per_token = "1e-07", output_cost_per_token = 0 }
"#;

#[test]
fn local_aliases_and_overrides() {
    let c = catalog(NAMES).with_rules(PricingRules::from_toml(RULES).unwrap());
    let price = |model: &str, provider: &str, tenant: &str, when: &str| {
        let mut e = io(model, 1_000, 0, None);
        e.provider = provider.to_owned();
        e.attribution.tenant_id = tenant.to_owned();
        e.event_time = at(when);
        c.price_event(&e).map(|p| (p.model.to_string(), p.price_version_text().into_owned(), p.cost.picos()))
    };
    let day = "2026-11-01T00:00:00Z";
    let v = "test@1970-01-01T00:00:00Z";
    // a provider's alias wins over the global one
    assert_eq!(price("chat-prod", "openai", "x", day).unwrap(), ("gpt-x".into(), v.into(), 1_000_000_000));
    assert_eq!(price("chat-prod", "azure.ai.openai", "x", day).unwrap(), ("azure/gpt-x".into(), v.into(), 1_100_000_000));
    assert_eq!(price("nowhere", "openai", "x", day).unwrap_err().reason, RejectReason::UnknownModel);
    // the most specific override: tenant + model beats tenant + provider
    let o = |id: &str, t: &str| format!("{v};override={id}@{t}");
    assert_eq!(
        price("chat-prod", "azure.ai.openai", "acme", day).unwrap(),
        ("azure/gpt-x".into(), o("acme-azure-gpt-x", "2026-06-01T00:00:00Z"), 110_000_000)
    );
    assert_eq!(
        price("chat-prod", "azure.ai.openai", "acme", "2026-05-31T23:59:59Z").unwrap(),
        ("azure/gpt-x".into(), o("acme-azure", "2026-01-01T00:00:00Z"), 550_000_000)
    );
    assert_eq!(price("gpt-x", "azure.ai.openai", "acme", "2027-01-01T00:00:00Z").unwrap().2, 1_000_000_000);
    // a self-hosted model's price list
    let p = price("llama-onprem", "vllm", "x", day).unwrap();
    assert_eq!(p, ("llama-onprem".into(), "override=onprem@2026-01-01T00:00:00Z".into(), 100_000_000));
    assert_eq!(price("llama-onprem", "vllm", "x", "2025-12-31T23:59:59Z").unwrap_err().reason, RejectReason::UnknownModel);
}

#[test]
fn rules_files_name_every_problem() {
    let bad = r#"
[aliases]
"a" = 5
[[overrides]]
id = "x y"
effective_from = "yesterday"
multiplier = 0.85
[[overrides]]
id = "p"
effective_from = "2026-01-01T00:00:00Z"
prices = { input_cost_per_token = "1e-06", output_cost_per_tokn = "1" }
[[overrides]]
id = "m"
provider = "openai"
effective_from = "2026-01-01T00:00:00Z"
multiplier = "2"
[[overrides]]
id = "m2"
provider = "openai"
effective_from = "2026-06-01T00:00:00Z"
multiplier = "3"
[other]
"#;
    let problems = PricingRules::from_toml(bad).unwrap_err().join("\n");
    for needle in [
        "unknown key `other`",
        "aliases.a: the target must be a string",
        "overrides[0].id",
        "overrides[0].effective_from",
        "overrides[0].multiplier: write the number as a string",
        "overrides[1].prices.output_cost_per_tokn: not a price field",
        "overrides[1]: prices need a model",
        "overrides `m` and `m2` have the same scope and overlapping times",
    ] {
        assert!(problems.contains(needle), "{needle:?} not in:\n{problems}");
    }
}
