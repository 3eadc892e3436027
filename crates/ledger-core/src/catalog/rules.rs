//! Local pricing rules (docs/pricing.md "Local pricing rules: aliases and price overrides"): a
//! TOML file of model aliases (deployment names to catalog keys) and price overrides (negotiated
//! multipliers, and price lists of models no catalog has), with effective dates.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};

use super::table::PriceTable;
use crate::decimal::Decimal;
use crate::event::EventTime;
use crate::money::{Money, SCALE};
use crate::pricing::{FieldSet, PriceField};

/// The aliases and overrides of one rules file. The default has none.
#[derive(Debug, Clone, Default)]
pub struct PricingRules {
    aliases: HashMap<String, String>,
    by_provider: HashMap<String, HashMap<String, String>>,
    overrides: Vec<PriceOverride>,
    /// Positions in `overrides` of those with a `model`, by model.
    by_model: HashMap<Arc<str>, Vec<usize>>,
    /// Positions of those without a `model`.
    any_model: Vec<usize>,
}

/// One `[[overrides]]` table.
#[derive(Debug, Clone)]
pub struct PriceOverride {
    /// The override's id (in the price version).
    pub id: String,
    /// Only events of this tenant, when set.
    pub tenant: Option<String>,
    /// Only events of this provider (`gen_ai.provider.name`), when set.
    pub provider: Option<String>,
    /// Only this model (the ledger's `model`), when set.
    pub model: Option<Arc<str>>,
    /// From when it applies.
    pub effective_from: DateTime<Utc>,
    /// Until when it applies (exclusive), when set.
    pub effective_to: Option<DateTime<Utc>>,
    /// What it does.
    pub kind: OverrideKind,
    from_micros: i64,
    to_micros: i64,
    /// `;override=ID@T` (a multiplier) or `override=ID@T` (prices).
    pub(super) version: Arc<str>,
    /// The resolved prices of a `prices` override.
    table: Option<PriceTable>,
}

/// What an override does to the prices.
#[derive(Debug, Clone)]
pub enum OverrideKind {
    /// Every resolved price times `num / den` (the `multiplier` text, exactly).
    Multiplier {
        /// The multiplier as written.
        text: String,
        /// Numerator.
        num: u128,
        /// Denominator (a power of ten).
        den: u128,
    },
    /// A price list that replaces the catalog entry.
    Prices(Box<FieldSet>),
}

impl PriceOverride {
    /// The resolved prices of a `prices` override (`None` for a multiplier).
    pub(super) fn table(&self) -> Option<&PriceTable> {
        self.table.as_ref()
    }

    /// The version text it adds (`;override=ID@T`) or is (`override=ID@T`).
    pub fn version(&self) -> &Arc<str> {
        &self.version
    }

    fn applies(&self, tenant: &str, provider: &str, at: EventTime) -> bool {
        self.from_micros <= at.micros()
            && at.micros() < self.to_micros
            && self.tenant.as_deref().is_none_or(|t| t == tenant)
            && self.provider.as_deref().is_none_or(|p| p == provider)
    }

    /// Specificity: tenant, then model, then provider.
    fn rank(&self) -> (bool, bool, bool) {
        (self.tenant.is_some(), self.model.is_some(), self.provider.is_some())
    }

    fn scope(&self) -> (&Option<String>, &Option<Arc<str>>, &Option<String>) {
        (&self.tenant, &self.model, &self.provider)
    }
}

const TOP_KEYS: [&str; 3] = ["aliases", "aliases_by_provider", "overrides"];
const OVERRIDE_KEYS: [&str; 8] = ["id", "tenant", "provider", "model", "effective_from", "effective_to", "multiplier", "prices"];

/// `effective_from` rounded up to a whole microsecond (events carry microseconds).
fn ceil_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros() + i64::from(!t.timestamp_subsec_nanos().is_multiple_of(1_000))
}

impl PricingRules {
    /// Reads a rules file; every problem is reported at once.
    pub fn from_toml(text: &str) -> Result<PricingRules, Vec<String>> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| vec![e.to_string()])?;
        let mut problems = Vec::new();
        let mut rules = PricingRules::default();
        for key in table.keys().filter(|k| !TOP_KEYS.contains(&k.as_str())) {
            problems.push(format!("unknown key `{key}` (expected aliases, aliases_by_provider or overrides)"));
        }
        if let Some(v) = table.get("aliases") {
            rules.aliases = string_map(v, "aliases", &mut problems);
        }
        if let Some(v) = table.get("aliases_by_provider") {
            match v.as_table() {
                Some(t) => {
                    for (provider, v) in t {
                        let map = string_map(v, &format!("aliases_by_provider.{provider}"), &mut problems);
                        rules.by_provider.insert(provider.clone(), map);
                    }
                }
                None => problems.push("aliases_by_provider: a table of provider -> table of aliases".to_owned()),
            }
        }
        match table.get("overrides") {
            None => {}
            Some(toml::Value::Array(list)) => {
                for (i, o) in list.iter().enumerate() {
                    match read_override(o, i) {
                        Ok(o) => rules.overrides.push(o),
                        Err(p) => problems.extend(p),
                    }
                }
            }
            Some(_) => problems.push("overrides: write [[overrides]] tables".to_owned()),
        }
        for (i, a) in rules.overrides.iter().enumerate() {
            for b in &rules.overrides[i + 1..] {
                if a.id == b.id {
                    problems.push(format!("override id `{}` is given twice", a.id));
                } else if a.scope() == b.scope() && a.from_micros < b.to_micros && b.from_micros < a.to_micros {
                    problems.push(format!(
                        "overrides `{}` and `{}` have the same scope and overlapping times: which one applies would be ambiguous",
                        a.id, b.id
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        for (i, o) in rules.overrides.iter().enumerate() {
            match &o.model {
                Some(m) => rules.by_model.entry(Arc::clone(m)).or_default().push(i),
                None => rules.any_model.push(i),
            }
        }
        Ok(rules)
    }

    /// The overrides, in file order.
    pub fn overrides(&self) -> &[PriceOverride] {
        &self.overrides
    }

    /// True when the rules have no override (the hot path skips them).
    #[inline]
    pub fn has_overrides(&self) -> bool {
        !self.overrides.is_empty()
    }

    /// Number of aliases (global and per provider).
    pub fn alias_count(&self) -> usize {
        self.aliases.len() + self.by_provider.values().map(HashMap::len).sum::<usize>()
    }

    /// Step 2.4 of the name rules: the alias targets of `model` for `provider`, then for every
    /// provider.
    pub fn alias_targets<'a>(&'a self, model: &str, provider: &str) -> impl Iterator<Item = &'a str> + 'a {
        let scoped = self.by_provider.get(provider).and_then(|m| m.get(model));
        let global = self.aliases.get(model);
        scoped.into_iter().chain(global).map(String::as_str)
    }

    /// The override that applies to an event of `tenant` and `provider` at `at` whose ledger
    /// `model` is `model`: the most specific one (tenant, then model, then provider).
    pub fn override_for(&self, tenant: &str, provider: &str, model: &str, at: EventTime) -> Option<&PriceOverride> {
        let with_model = self.by_model.get(model).map_or(&[][..], Vec::as_slice);
        let mut best: Option<&PriceOverride> = None;
        for &i in with_model.iter().chain(&self.any_model) {
            let o = &self.overrides[i];
            if o.applies(tenant, provider, at) && best.is_none_or(|b| o.rank() > b.rank()) {
                best = Some(o);
            }
        }
        best
    }
}

fn string_map(v: &toml::Value, what: &str, problems: &mut Vec<String>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Some(t) = v.as_table() else {
        problems.push(format!("{what}: a table of name = \"entry key\""));
        return out;
    };
    for (name, target) in t {
        match target.as_str() {
            Some(s) => {
                out.insert(name.clone(), s.to_owned());
            }
            None => problems.push(format!("{what}.{name}: the target must be a string (an entry key)")),
        }
    }
    out
}

/// A non-negative decimal number: a string (exact) or a TOML integer; never a float.
fn number(v: &toml::Value, what: &str) -> Result<Decimal, String> {
    let d = match v {
        toml::Value::String(s) if super::litellm::json_number_syntax(s) => {
            Decimal::parse(s).map_err(|e| format!("{what}: {e}"))?
        }
        toml::Value::Integer(i) => Decimal::parse(&i.to_string()).map_err(|e| format!("{what}: {e}"))?,
        toml::Value::Float(_) => return Err(format!("{what}: write the number as a string (\"0.85\") so that it stays exact")),
        _ => return Err(format!("{what}: not a decimal number")),
    };
    if d.is_negative() {
        return Err(format!("{what}: negative"));
    }
    Ok(d)
}

fn instant(v: Option<&toml::Value>, what: &str) -> Result<Option<DateTime<Utc>>, String> {
    match v {
        None => Ok(None),
        Some(toml::Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| format!("{what}: {s:?} is not an RFC 3339 instant ({e})")),
        Some(_) => Err(format!("{what}: write the instant as an RFC 3339 string, e.g. \"2027-01-01T00:00:00Z\"")),
    }
}

fn read_override(v: &toml::Value, i: usize) -> Result<PriceOverride, Vec<String>> {
    let at = format!("overrides[{i}]");
    let Some(t) = v.as_table() else { return Err(vec![format!("{at}: not a table")]) };
    let mut problems = Vec::new();
    for key in t.keys().filter(|k| !OVERRIDE_KEYS.contains(&k.as_str())) {
        problems.push(format!("{at}: unknown key `{key}`"));
    }
    let text = |k: &str, problems: &mut Vec<String>| match t.get(k) {
        None => None,
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(_) => {
            problems.push(format!("{at}.{k}: not a string"));
            None
        }
    };
    let id = text("id", &mut problems).unwrap_or_default();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        problems.push(format!("{at}.id: required, letters, digits, '.', '_' or '-'"));
    }
    let (tenant, provider, model) =
        (text("tenant", &mut problems), text("provider", &mut problems), text("model", &mut problems));
    let from = instant(t.get("effective_from"), &format!("{at}.effective_from")).map_err(|e| problems.push(e)).ok().flatten();
    let to = instant(t.get("effective_to"), &format!("{at}.effective_to")).map_err(|e| problems.push(e)).ok().flatten();
    if from.is_none() && !t.contains_key("effective_from") {
        problems.push(format!("{at}.effective_from: required"));
    }
    if let (Some(f), Some(to)) = (from, to) {
        if to <= f {
            problems.push(format!("{at}: effective_to must be after effective_from"));
        }
    }
    let kind = match (t.get("multiplier"), t.get("prices")) {
        (Some(m), None) => match number(m, &format!("{at}.multiplier")) {
            Ok(d) => multiplier(&d, m).map_err(|e| problems.push(format!("{at}.multiplier: {e}"))).ok(),
            Err(e) => {
                problems.push(e);
                None
            }
        },
        (None, Some(p)) => {
            if model.is_none() {
                problems.push(format!("{at}: prices need a model (a price list is one model's)"));
            }
            prices(p, &at, &mut problems).map(|f| OverrideKind::Prices(Box::new(f)))
        }
        _ => {
            problems.push(format!("{at}: give exactly one of multiplier and prices"));
            None
        }
    };
    let (Some(from), Some(kind), true) = (from, kind, problems.is_empty()) else { return Err(problems) };
    let tag = format!("{id}@{}", from.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    let (version, table) = match &kind {
        OverrideKind::Multiplier { .. } => (format!(";override={tag}"), None),
        OverrideKind::Prices(f) => (format!("override={tag}"), PriceTable::build(f, false)),
    };
    Ok(PriceOverride {
        id,
        tenant,
        provider,
        model: model.map(Arc::from),
        effective_from: from,
        effective_to: to,
        kind,
        from_micros: ceil_micros(from),
        to_micros: to.map_or(i64::MAX, ceil_micros),
        version: version.into(),
        table,
    })
}

fn multiplier(d: &Decimal, raw: &toml::Value) -> Result<OverrideKind, String> {
    // An exact fraction num / 10^scale: the smallest scale (at most 38) that holds every digit.
    for scale in 0..=38u32 {
        if let Some(Ok(num)) = d.to_scale_exact(scale) {
            let text = raw.as_str().map_or_else(|| raw.to_string(), str::to_owned);
            return Ok(OverrideKind::Multiplier { text, num: num.unsigned_abs(), den: 10u128.pow(scale) });
        }
    }
    Err("too many digits (at most 38 after the point, and below 10^38)".to_owned())
}

fn prices(v: &toml::Value, at: &str, problems: &mut Vec<String>) -> Option<FieldSet> {
    let Some(t) = v.as_table() else {
        problems.push(format!("{at}.prices: a table of price fields"));
        return None;
    };
    let mut fields = FieldSet::default();
    let before = problems.len();
    for (name, value) in t {
        let Some((field, tier, above)) = super::litellm::price_field_parts(name) else {
            problems.push(format!("{at}.prices.{name}: not a price field of docs/pricing.md"));
            continue;
        };
        match number(value, &format!("{at}.prices.{name}"))
            .and_then(|d| d.to_scale_half_even(SCALE).map_err(|_| format!("{at}.prices.{name}: out of range")))
        {
            Ok(s) => fields[field.index()].set(tier, above, Money::from_picos(s.value)),
            Err(e) => problems.push(e),
        }
    }
    for f in [PriceField::Input, PriceField::Output] {
        if fields[f.index()].plain().is_none() && problems.len() == before {
            problems.push(format!("{at}.prices: {} is required", f.litellm_name()));
        }
    }
    (problems.len() == before).then_some(fields)
}
