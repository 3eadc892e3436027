//! Reading LiteLLM JSON: a `model_prices_and_context_window.json` text into a [`CatalogSource`],
//! prices from the text of each number.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::assemble::{Parsed, SourceBuilder};
use super::forms::{read_off_peak, read_tiered};
use super::report::{CatalogError, IgnoredField, LoadReport, RoundedPrice, SkipReason};
use super::source::{price_version, CatalogSource, TokenLimits};
use crate::decimal::Decimal;
use crate::money::{Money, SCALE};
use crate::pricing::{FieldSet, PriceField};

/// The key of LiteLLM's documentation entry, which is not a model.
pub const SAMPLE_SPEC_KEY: &str = "sample_spec";

impl CatalogSource {
    /// Reads a LiteLLM `model_prices_and_context_window.json` text.
    ///
    /// Prices are read from the number text (JSON numbers, or JSON strings holding a number) and
    /// rounded half to even to 12 fractional digits; the report lists every rounding. Entries
    /// without both `input_cost_per_token` and `output_cost_per_token` (directly, through
    /// `alias_of` or through `tiered_pricing`) are skipped with a reason, and so are entries that
    /// use `alias_of`, `tiered_pricing` or `off_peak_pricing` wrongly (docs/pricing.md).
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
        let mut seen: HashSet<&str> = HashSet::with_capacity(top.0.len());
        let mut builder = SourceBuilder::new(name, effective_from, version, top.0.len());
        for (position, (key, raw)) in top.0.iter().enumerate() {
            if !seen.insert(key.as_str()) {
                return Err(CatalogError::DuplicateKey { source_name: name.to_owned(), key: key.clone() });
            }
            builder.add(position, key, read_entry(key, raw));
        }
        builder.finish()
    }
}

/// A JSON object as its members in order, values unparsed.
pub(super) struct OrderedRaw<'a>(pub(super) Vec<(String, &'a RawValue)>);

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

/// True for a price field name of docs/pricing.md (a plain field or any variant of one, used or
/// ignored), false for every other field.
pub(super) fn is_price_field(name: &str) -> bool {
    !matches!(classify(name), FieldKind::Other)
}

/// The field, service tier and long-context threshold of a used price field name.
pub(super) fn price_field_parts(name: &str) -> Option<(PriceField, Option<&str>, Option<u64>)> {
    match classify(name) {
        FieldKind::Price { field, tier, above } => Some((field, tier, above)),
        _ => None,
    }
}

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
        if !json_number_syntax(&owned) {
            return Err("not a number".to_owned());
        }
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

/// JSON's number syntax: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
pub(super) fn json_number_syntax(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b[int_start] == b'0') {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Rounded and ignored prices found while reading, for the load report.
#[derive(Debug, Default)]
pub(super) struct PriceRecords {
    pub(super) rounded: Vec<RoundedPrice>,
    pub(super) ignored: Vec<IgnoredField>,
}

impl PriceRecords {
    /// Lists a field of `model` that is not used, and why.
    pub(super) fn ignore(&mut self, model: &str, field: &str, value: &RawValue, reason: &str) {
        self.ignored.push(IgnoredField {
            model: model.to_owned(),
            field: field.to_owned(),
            text: value.get().to_owned(),
            reason: reason.to_owned(),
        });
    }
}

/// Reads the price fields of `object` into `fields` (a tier or the off-peak prices: an invalid
/// price is ignored and listed); `prefix` names the part in the report (`tiered_pricing[0].`).
pub(super) fn read_fields(key: &str, prefix: &str, object: &OrderedRaw<'_>, fields: &mut FieldSet, records: &mut PriceRecords) {
    for (name, value) in &object.0 {
        read_field(key, prefix, name, value, fields, records);
    }
}

/// Reads one field; returns the detail when it is a price field whose value is not a price.
fn read_field(
    key: &str,
    prefix: &str,
    name: &str,
    value: &RawValue,
    fields: &mut FieldSet,
    records: &mut PriceRecords,
) -> Option<String> {
    match classify(name) {
        FieldKind::Other => None,
        FieldKind::Ignored(reason) => {
            records.ignore(key, &format!("{prefix}{name}"), value, reason);
            None
        }
        FieldKind::Price { field, tier, above } => match read_price(value) {
            Ok((price, was_rounded)) => {
                if was_rounded {
                    records.rounded.push(RoundedPrice {
                        model: key.to_owned(),
                        field: format!("{prefix}{name}"),
                        text: value.get().to_owned(),
                        rounded: price,
                    });
                }
                fields[field.index()].set(tier, above, price);
                None
            }
            Err(detail) => {
                records.ignore(key, &format!("{prefix}{name}"), value, &detail);
                Some(detail)
            }
        },
    }
}

/// What one top-level entry of a source is.
pub(super) enum Read {
    /// A priceable entry (with its rounded and ignored prices).
    Entry(Box<Parsed>, PriceRecords),
    /// An `alias_of` entry: the target, and the entry's own fields that are not used.
    Alias(String, PriceRecords),
    /// Not a priceable model.
    Skip(SkipReason),
}

fn read_entry(key: &str, raw: &RawValue) -> Read {
    let mut records = PriceRecords::default();
    if key == SAMPLE_SPEC_KEY {
        return Read::Skip(SkipReason::SampleSpec);
    }
    if !raw.get().starts_with('{') {
        return Read::Skip(SkipReason::NotAnObject);
    }
    let Ok(fields) = serde_json::from_str::<OrderedRaw<'_>>(raw.get()) else {
        return Read::Skip(SkipReason::NotAnObject);
    };
    let get = |name: &str| fields.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    if let Some(target) = get("alias_of") {
        let Ok(target) = serde_json::from_str::<String>(target.get()) else {
            return Read::Skip(SkipReason::InvalidAliasOf);
        };
        for (name, value) in &fields.0 {
            if is_price_field(name) {
                records.ignore(key, name, value, "an alias_of entry prices exactly as its target");
            }
        }
        return Read::Alias(target, records);
    }
    let mut prices: FieldSet = Default::default();
    let mut provider = None;
    let mut invalid_required: Option<SkipReason> = None;
    for (name, value) in &fields.0 {
        if name == "litellm_provider" {
            provider = serde_json::from_str::<String>(value.get()).ok().map(String::into_boxed_str);
            continue;
        }
        if let Some(detail) = read_field(key, "", name, value, &mut prices, &mut records) {
            let required = name == PriceField::Input.litellm_name() || name == PriceField::Output.litellm_name();
            if required && invalid_required.is_none() {
                invalid_required = Some(SkipReason::InvalidPrice { field: name.clone(), detail });
            }
        }
    }
    let tiered = match get("tiered_pricing").map(|raw| read_tiered(key, raw, &mut records)) {
        None | Some(Ok(None)) => Vec::new(),
        Some(Ok(Some(t))) => t,
        Some(Err(detail)) => return Read::Skip(SkipReason::InvalidTieredPricing { detail }),
    };
    let off_peak = match get("off_peak_pricing").map(|raw| read_off_peak(key, raw, &mut records)) {
        None => None,
        Some(Ok(o)) => Some(o),
        Some(Err(detail)) => return Read::Skip(SkipReason::InvalidOffPeakPricing { detail }),
    };
    let priceable =
        |f: &FieldSet| f[PriceField::Input.index()].plain().is_some() && f[PriceField::Output.index()].plain().is_some();
    if tiered.is_empty() {
        if !priceable(&prices) {
            let has_in = prices[PriceField::Input.index()].plain().is_some();
            let has_out = prices[PriceField::Output.index()].plain().is_some();
            return Read::Skip(invalid_required.unwrap_or(match (has_in, has_out) {
                (false, false) => SkipReason::MissingInputAndOutputCost,
                (false, true) => SkipReason::MissingInputCost,
                _ => SkipReason::MissingOutputCost,
            }));
        }
    } else {
        for (i, t) in tiered.iter().enumerate() {
            let mut merged = prices.clone();
            for f in PriceField::ALL {
                merged[f.index()].overlay(&t.fields[f.index()]);
            }
            if !priceable(&merged) {
                return Read::Skip(SkipReason::TierNotPriceable { tier: i });
            }
        }
    }
    let limit = |name: &str| get(name).and_then(|v| serde_json::from_str::<u64>(v.get()).ok()).filter(|n| *n > 0);
    let limits = TokenLimits::with_margin(limit("max_input_tokens"), limit("max_output_tokens").or_else(|| limit("max_tokens")));
    Read::Entry(Box::new(Parsed { key: key.into(), provider, prices, tiered, off_peak, limits }), records)
}
