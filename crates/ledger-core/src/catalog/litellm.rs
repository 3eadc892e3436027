//! Reading LiteLLM JSON: a `model_prices_and_context_window.json` text into a [`CatalogSource`],
//! prices from the text of each number.

use std::collections::{HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::report::{CatalogError, IgnoredField, LoadReport, RoundedPrice, SkipReason, SkippedEntry};
use super::source::{price_version, CatalogEntry, CatalogSource, NameMap};
use crate::decimal::Decimal;
use crate::money::{Money, SCALE};
use crate::pricing::{PriceField, PriceVariants};

/// The key of LiteLLM's documentation entry, which is not a model.
pub const SAMPLE_SPEC_KEY: &str = "sample_spec";

impl CatalogSource {
    /// Reads a LiteLLM `model_prices_and_context_window.json` text.
    ///
    /// Prices are read from the number text (JSON numbers, or JSON strings holding a number) and
    /// rounded half to even to 12 fractional digits; the report lists every rounding. Entries
    /// without both `input_cost_per_token` and `output_cost_per_token` are skipped with a reason.
    pub fn from_litellm_json(
        name: &str,
        effective_from: DateTime<Utc>,
        json_text: &str,
    ) -> Result<(CatalogSource, LoadReport), CatalogError> {
        if name.is_empty() || name.contains('@') {
            return Err(CatalogError::InvalidName(name.to_owned()));
        }
        let top: OrderedRaw<'_> = match serde_json::from_str(json_text) {
            Ok(t) => t,
            Err(e) => {
                let trimmed = json_text.trim_start();
                if e.is_data() && !trimmed.starts_with('{') {
                    return Err(CatalogError::NotAnObject { source_name: name.to_owned() });
                }
                return Err(CatalogError::Json { source_name: name.to_owned(), message: e.to_string() });
            }
        };
        let version = price_version(name, effective_from);
        let mut report = LoadReport {
            source: name.to_owned(),
            effective_from,
            version: version.clone(),
            entries: top.0.len(),
            priced: 0,
            skipped: Vec::new(),
            rounded: Vec::new(),
            ignored: Vec::new(),
        };
        let mut entries: NameMap = HashMap::with_capacity_and_hasher(top.0.len(), Default::default());
        let mut seen: HashSet<&str> = HashSet::with_capacity(top.0.len());
        for (key, raw) in &top.0 {
            if !seen.insert(key.as_str()) {
                return Err(CatalogError::DuplicateKey { source_name: name.to_owned(), key: key.clone() });
            }
            match read_entry(key, raw) {
                Ok((entry, rounded, ignored)) => {
                    report.rounded.extend(rounded);
                    report.ignored.extend(ignored);
                    entries.insert(entry.key.clone(), entry);
                }
                Err(reason) => report.skipped.push(SkippedEntry { model: key.clone(), reason }),
            }
        }
        report.priced = entries.len();
        if entries.is_empty() {
            return Err(CatalogError::NoPriceableModel { source_name: name.to_owned(), entries: report.entries });
        }
        let sub_micro = i64::from(!effective_from.timestamp_subsec_nanos().is_multiple_of(1_000));
        let effective_from_micros = effective_from.timestamp_micros() + sub_micro;
        let source = CatalogSource { name: name.into(), effective_from, effective_from_micros, version: version.into(), entries };
        Ok((source, report))
    }
}

/// A JSON object as its members in order, values unparsed.
struct OrderedRaw<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for OrderedRaw<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedRaw<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((k, raw)) = map.next_entry::<String, &'de RawValue>()? {
                    v.push((k, raw));
                }
                Ok(OrderedRaw(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// What a field name of an entry means to the catalog.
enum FieldKind<'a> {
    Price { field: PriceField, tier: Option<&'a str>, above: Option<u64> },
    Ignored(&'static str),
    Other,
}

/// Bases in match order: the longer `..._above_1hr` before its prefix.
const BASES: [PriceField; 5] =
    [PriceField::CacheCreation1h, PriceField::CacheCreation, PriceField::CacheRead, PriceField::Input, PriceField::Output];

fn classify(name: &str) -> FieldKind<'_> {
    let reasoning = PriceField::Reasoning.litellm_name();
    if name == reasoning {
        return FieldKind::Price { field: PriceField::Reasoning, tier: None, above: None };
    }
    if name.strip_prefix(reasoning).is_some_and(|r| r.starts_with('_')) {
        return FieldKind::Ignored("output_cost_per_reasoning_token has no variants in docs/pricing.md");
    }
    for field in BASES {
        let Some(rest) = name.strip_prefix(field.litellm_name()) else { continue };
        if rest.is_empty() {
            return FieldKind::Price { field, tier: None, above: None };
        }
        let Some(rest) = rest.strip_prefix('_') else { continue };
        return classify_variant(field, rest);
    }
    FieldKind::Other
}

fn classify_variant(field: PriceField, rest: &str) -> FieldKind<'_> {
    const UNRECOGNIZED: &str = "unrecognized variant (neither _above_{N}k_tokens nor a service tier)";
    if let Some(r) = rest.strip_prefix("above_") {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        let Some(after) = r[digits..].strip_prefix("k_tokens") else { return FieldKind::Ignored(UNRECOGNIZED) };
        let Some(threshold) = r[..digits].parse::<u64>().ok().and_then(|n| n.checked_mul(1000)) else {
            return FieldKind::Ignored(UNRECOGNIZED);
        };
        if after.is_empty() {
            return FieldKind::Price { field, tier: None, above: Some(threshold) };
        }
        return match after.strip_prefix('_') {
            Some(tier) if valid_tier(tier) => FieldKind::Price { field, tier: Some(tier), above: Some(threshold) },
            _ => FieldKind::Ignored(UNRECOGNIZED),
        };
    }
    if valid_tier(rest) {
        FieldKind::Price { field, tier: Some(rest), above: None }
    } else {
        FieldKind::Ignored(UNRECOGNIZED)
    }
}

fn valid_tier(tier: &str) -> bool {
    !tier.is_empty() && !tier.starts_with("above_") && tier.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A price read from its text: the value per token and whether it was rounded.
fn read_price(raw: &RawValue) -> Result<(Money, bool), String> {
    let text = raw.get();
    let owned;
    let number = if text.starts_with('"') {
        owned = serde_json::from_str::<String>(text).map_err(|e| e.to_string())?;
        owned.as_str()
    } else if text == "null" {
        return Err("null".to_owned());
    } else {
        text
    };
    let d = Decimal::parse(number).map_err(|_| "not a number".to_owned())?;
    if d.is_negative() {
        return Err("negative price".to_owned());
    }
    let s = d.to_scale_half_even(SCALE).map_err(|_| "out of range".to_owned())?;
    Ok((Money::from_picos(s.value), s.rounded))
}

type EntryRead = (CatalogEntry, Vec<RoundedPrice>, Vec<IgnoredField>);

fn read_entry(key: &str, raw: &RawValue) -> Result<EntryRead, SkipReason> {
    if key == SAMPLE_SPEC_KEY {
        return Err(SkipReason::SampleSpec);
    }
    if !raw.get().starts_with('{') {
        return Err(SkipReason::NotAnObject);
    }
    let fields: OrderedRaw<'_> = serde_json::from_str(raw.get()).map_err(|_| SkipReason::NotAnObject)?;
    let mut prices: [PriceVariants; 6] = Default::default();
    let mut provider = None;
    let mut rounded = Vec::new();
    let mut ignored = Vec::new();
    let mut invalid_required: Option<SkipReason> = None;
    for (name, value) in &fields.0 {
        if name == "litellm_provider" {
            provider = serde_json::from_str::<String>(value.get()).ok().map(String::into_boxed_str);
            continue;
        }
        match classify(name) {
            FieldKind::Other => {}
            FieldKind::Ignored(reason) => ignored.push(IgnoredField {
                model: key.to_owned(),
                field: name.clone(),
                text: value.get().to_owned(),
                reason: reason.to_owned(),
            }),
            FieldKind::Price { field, tier, above } => match read_price(value) {
                Ok((price, was_rounded)) => {
                    if was_rounded {
                        rounded.push(RoundedPrice {
                            model: key.to_owned(),
                            field: name.clone(),
                            text: value.get().to_owned(),
                            rounded: price,
                        });
                    }
                    prices[field.index()].set(tier, above, price);
                }
                Err(detail) => {
                    let required = matches!(field, PriceField::Input | PriceField::Output) && tier.is_none() && above.is_none();
                    if required && invalid_required.is_none() {
                        invalid_required = Some(SkipReason::InvalidPrice { field: name.clone(), detail: detail.clone() });
                    }
                    ignored.push(IgnoredField {
                        model: key.to_owned(),
                        field: name.clone(),
                        text: value.get().to_owned(),
                        reason: detail,
                    });
                }
            },
        }
    }
    let has_in = prices[PriceField::Input.index()].plain().is_some();
    let has_out = prices[PriceField::Output.index()].plain().is_some();
    if !(has_in && has_out) {
        return Err(invalid_required.unwrap_or(match (has_in, has_out) {
            (false, false) => SkipReason::MissingInputAndOutputCost,
            (false, true) => SkipReason::MissingInputCost,
            _ => SkipReason::MissingOutputCost,
        }));
    }
    let entry = CatalogEntry { key: key.into(), litellm_provider: provider, prices };
    Ok((entry, rounded, ignored))
}
