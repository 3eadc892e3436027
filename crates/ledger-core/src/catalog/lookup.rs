//! The name rules of docs/pricing.md "Which entry prices an event", step 2: which entry of one
//! source a model name of an event finds, and by which step. The exact-name rules (2.1-2.3) are
//! the hot path; the aliases (2.4-2.8) run only for a name those rules do not find.

use std::fmt;

use super::rules::PricingRules;
use super::source::{CatalogEntry, CatalogSource};

/// Which step of docs/pricing.md's name rules found an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LookupStep {
    /// 2.1: the name itself.
    Exact,
    /// 2.2: `provider/name`.
    ProviderSlash,
    /// 2.3: `rest` of a name `x/rest`.
    Rest,
    /// 2.4: the local alias map.
    LocalAlias,
    /// 2.5: `L/name` for a LiteLLM prefix `L` of the OpenTelemetry provider.
    ProviderPrefix,
    /// 2.6: the name without a Bedrock cross-region prefix (`us.`, `eu.`, `apac.`, `global.`).
    BedrockRegion,
    /// 2.7: the Bedrock id of an Anthropic model name.
    AnthropicBedrockId,
    /// 2.8: the undated name of a dated one.
    Undated,
}

impl LookupStep {
    /// The step's number in docs/pricing.md ("2.1" ... "2.8").
    pub const fn number(self) -> &'static str {
        match self {
            LookupStep::Exact => "2.1",
            LookupStep::ProviderSlash => "2.2",
            LookupStep::Rest => "2.3",
            LookupStep::LocalAlias => "2.4",
            LookupStep::ProviderPrefix => "2.5",
            LookupStep::BedrockRegion => "2.6",
            LookupStep::AnthropicBedrockId => "2.7",
            LookupStep::Undated => "2.8",
        }
    }

    /// True for the alias steps (2.4-2.8), false for the exact-name rules.
    pub const fn is_alias(self) -> bool {
        !matches!(self, LookupStep::Exact | LookupStep::ProviderSlash | LookupStep::Rest)
    }
}

impl fmt::Display for LookupStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            LookupStep::Exact => "the name itself",
            LookupStep::ProviderSlash => "provider/name",
            LookupStep::Rest => "rest of x/rest",
            LookupStep::LocalAlias => "local alias map",
            LookupStep::ProviderPrefix => "LiteLLM prefix of the OpenTelemetry provider",
            LookupStep::BedrockRegion => "without the Bedrock cross-region prefix",
            LookupStep::AnthropicBedrockId => "Bedrock id of the Anthropic model",
            LookupStep::Undated => "undated name",
        };
        write!(f, "step {} ({what})", self.number())
    }
}

/// docs/pricing.md's provider table: OpenTelemetry `gen_ai.provider.name` -> LiteLLM key prefixes.
pub const PROVIDER_PREFIXES: &[(&str, &[&str])] = &[
    ("gcp.gemini", &["gemini"]),
    ("gcp.vertex_ai", &["vertex_ai"]),
    ("aws.bedrock", &["bedrock"]),
    ("azure.ai.openai", &["azure"]),
    ("azure.ai.inference", &["azure_ai"]),
    ("x_ai", &["xai"]),
    ("mistral_ai", &["mistral"]),
    ("openai", &["openai"]),
    ("anthropic", &["anthropic"]),
    ("deepseek", &["deepseek"]),
    ("groq", &["groq"]),
    ("cohere", &["cohere"]),
    ("perplexity", &["perplexity"]),
    ("ibm.watsonx.ai", &["watsonx"]),
];

/// Bedrock's cross-region inference prefixes of step 2.6.
pub const BEDROCK_REGION_PREFIXES: [&str; 4] = ["us.", "eu.", "apac.", "global."];

/// The LiteLLM prefixes of an OpenTelemetry provider name (none for any other provider).
pub fn provider_prefixes(provider: &str) -> &'static [&'static str] {
    PROVIDER_PREFIXES.iter().find(|(p, _)| *p == provider).map_or(&[], |(_, l)| l)
}

/// The undated name of a name that ends in `-YYYYMMDD`, `-YYYY-MM-DD` or `@YYYYMMDD` (`YYYY`
/// 2000-2099, `MM` 01-12, `DD` 01-31) with something before it.
pub fn undated(name: &str) -> Option<&str> {
    let b = name.as_bytes();
    let date = |d: &[u8]| -> bool {
        d.len() == 8
            && d.iter().all(u8::is_ascii_digit)
            && d[0] == b'2'
            && d[1] == b'0'
            && matches!((d[4], d[5]), (b'0', b'1'..=b'9') | (b'1', b'0'..=b'2'))
            && matches!((d[6], d[7]), (b'0', b'1'..=b'9') | (b'1' | b'2', b'0'..=b'9') | (b'3', b'0' | b'1'))
    };
    let n = b.len();
    if n > 9 && matches!(b[n - 9], b'-' | b'@') && date(&b[n - 8..]) {
        return Some(&name[..n - 9]);
    }
    if n > 11 && b[n - 11] == b'-' && b[n - 6] == b'-' && b[n - 3] == b'-' {
        let d = [b[n - 10], b[n - 9], b[n - 8], b[n - 7], b[n - 5], b[n - 4], b[n - 2], b[n - 1]];
        if date(&d) {
            return Some(&name[..n - 11]);
        }
    }
    None
}

/// A key of the form `[global.]anthropic.{name}-v{N}[:{M}]`: `(name, preference)`, where a
/// smaller preference wins (unregioned first, then the smallest `N`, no `:M` first, the
/// smallest `M`; the key itself breaks ties). Digits compare as numbers of any length.
pub(super) fn bedrock_id(key: &str) -> Option<(&str, BedrockPreference)> {
    let (global, rest) = match key.strip_prefix("global.") {
        Some(r) => (true, r),
        None => (false, key),
    };
    let rest = rest.strip_prefix("anthropic.")?;
    let at = rest.rfind("-v")?;
    let (name, version) = (&rest[..at], &rest[at + 2..]);
    let (n, m) = match version.split_once(':') {
        Some((n, m)) => (n, Some(m)),
        None => (version, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if name.is_empty() || !digits(n) || !m.is_none_or(digits) {
        return None;
    }
    let number = |s: &'_ str| {
        let s = s.trim_start_matches('0');
        (s.len(), s.to_owned())
    };
    Some((name, BedrockPreference { global, n: number(n), m: m.map(number), key: key.as_bytes().to_vec() }))
}

/// The order of step 2.7 among the Bedrock ids of one name (derived: field by field).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct BedrockPreference {
    global: bool,
    n: (usize, String),
    m: Option<(usize, String)>,
    key: Vec<u8>,
}

impl CatalogSource {
    /// The entry that prices model `model` of provider `provider` within this source, and the
    /// step of docs/pricing.md "Which entry prices an event" (step 2) that finds it: `model`,
    /// `provider/model`, `rest` of `x/rest`, then the aliases of `rules` and the built-in ones.
    /// See [`Catalog::find`](super::Catalog::find) for the price history.
    #[inline]
    pub fn lookup(&self, model: &str, provider: &str, rules: &PricingRules) -> Option<(&CatalogEntry, LookupStep)> {
        if let Some(e) = self.get(model) {
            return Some((e, LookupStep::Exact));
        }
        if !provider.is_empty() {
            if let Some(e) = with_joined(provider, model, |j| self.get(j)) {
                return Some((e, LookupStep::ProviderSlash));
            }
        }
        if let Some((_, rest)) = model.split_once('/') {
            if let Some(e) = self.get(rest) {
                return Some((e, LookupStep::Rest));
            }
        }
        self.lookup_alias(model, provider, rules)
    }

    /// Steps 2.4-2.8, for a name the exact-name rules do not find.
    #[cold]
    #[inline(never)]
    fn lookup_alias(&self, model: &str, provider: &str, rules: &PricingRules) -> Option<(&CatalogEntry, LookupStep)> {
        for target in rules.alias_targets(model, provider) {
            if let Some(e) = self.get(target) {
                return Some((e, LookupStep::LocalAlias));
            }
        }
        let prefixes = provider_prefixes(provider);
        // `name`, `provider/name`, then `L/name` for each prefix
        let forms = |name: &str, with_name: bool, step| {
            if with_name {
                if let Some(e) = self.get(name) {
                    return Some((e, step));
                }
                if !provider.is_empty() {
                    if let Some(e) = with_joined(provider, name, |j| self.get(j)) {
                        return Some((e, step));
                    }
                }
            }
            prefixes.iter().find_map(|l| with_joined(l, name, |j| self.get(j)).map(|e| (e, step)))
        };
        if let Some(f) = forms(model, false, LookupStep::ProviderPrefix) {
            return Some(f);
        }
        if let Some(m1) = BEDROCK_REGION_PREFIXES.iter().find_map(|r| model.strip_prefix(r)) {
            if let Some(f) = forms(m1, true, LookupStep::BedrockRegion) {
                return Some(f);
            }
        }
        if provider == "anthropic" {
            if let Some(&i) = self.bedrock_ids.get(model) {
                return Some((&self.entries[i as usize], LookupStep::AnthropicBedrockId));
            }
        }
        undated(model).and_then(|u| forms(u, true, LookupStep::Undated))
    }
}

/// Calls `f` with `"{prefix}/{name}"`, built on the stack when short.
#[inline]
pub(super) fn with_joined<R>(prefix: &str, name: &str, f: impl FnOnce(&str) -> R) -> R {
    const CAP: usize = 192;
    let len = prefix.len() + 1 + name.len();
    if len <= CAP {
        let mut buf = [0u8; CAP];
        buf[..prefix.len()].copy_from_slice(prefix.as_bytes());
        buf[prefix.len()] = b'/';
        buf[prefix.len() + 1..len].copy_from_slice(name.as_bytes());
        // Concatenating two `str`s and '/' is always valid UTF-8.
        match std::str::from_utf8(&buf[..len]) {
            Ok(s) => f(s),
            Err(_) => f(&format!("{prefix}/{name}")),
        }
    } else {
        f(&format!("{prefix}/{name}"))
    }
}

/// The names the exact-name rules try for a model (for the `unknown_model` detail).
pub(super) fn tried_names(model: &str, provider: &str, out: &mut Vec<String>) {
    let mut push = |s: String| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    push(model.to_owned());
    if !provider.is_empty() {
        push(format!("{provider}/{model}"));
    }
    if let Some((_, rest)) = model.split_once('/') {
        push(rest.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(undated("claude-sonnet-4-20250514"), Some("claude-sonnet-4"));
        assert_eq!(undated("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(undated("claude-3-5-sonnet@20240620"), Some("claude-3-5-sonnet"));
        for not in ["-20250514", "x-19991231", "x-20251301", "x-20250132", "x-2025-1-01", "x-0825", "x-20250100", "gpt-x-2099"] {
            assert_eq!(undated(not), None, "{not}");
        }
        assert_eq!(undated("x-20990131"), Some("x"));
        assert_eq!(undated("x-2099-12-31"), Some("x"));
    }

    #[test]
    fn bedrock_ids() {
        let (name, p) = bedrock_id("anthropic.claude-sonnet-4-20250514-v1:0").unwrap();
        assert_eq!(name, "claude-sonnet-4-20250514");
        let (_, g) = bedrock_id("global.anthropic.claude-sonnet-4-20250514-v1:0").unwrap();
        assert!(p < g);
        let (name, v2) = bedrock_id("anthropic.claude-opus-4-6-v1").unwrap();
        assert_eq!(name, "claude-opus-4-6");
        let (_, v10) = bedrock_id("anthropic.claude-opus-4-6-v10").unwrap();
        let (_, v1m) = bedrock_id("anthropic.claude-opus-4-6-v1:0").unwrap();
        assert!(v2 < v1m && v1m < v10);
        for not in
            ["us.anthropic.claude-x-v1:0", "anthropic.-v1", "anthropic.claude-x-v", "anthropic.claude-x-v1:", "meta.llama-v1:0"]
        {
            assert!(bedrock_id(not).is_none(), "{not}");
        }
    }
}
