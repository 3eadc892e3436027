//! Helpers shared by the catalog and pricing tests.
#![allow(dead_code, unreachable_pub)]

use chrono::{DateTime, TimeZone, Utc};
use ledger_core::catalog::{Catalog, CatalogSource, LoadReport};
use ledger_core::UsageEvent;

/// 1970-01-01T00:00:00Z.
pub fn epoch() -> DateTime<Utc> {
    Utc.timestamp_opt(0, 0).unwrap()
}

/// Parses an RFC 3339 instant.
pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Loads one source.
pub fn source(name: &str, from: DateTime<Utc>, json: &str) -> (CatalogSource, LoadReport) {
    CatalogSource::from_litellm_json(name, from, json).unwrap()
}

/// A one-source catalog effective from the epoch.
pub fn catalog(json: &str) -> Catalog {
    Catalog::new(vec![source("test", epoch(), json).0]).unwrap()
}

/// A valid event for `model` of provider `openai` at 2026-11-01T00:00:00Z with no tokens.
pub fn event(model: &str) -> UsageEvent {
    serde_json::from_value(serde_json::json!({
        "event_id": "e1",
        "event_time": "2026-11-01T00:00:00Z",
        "tenant_id": "acme",
        "provider": "openai",
        "request_model": model,
    }))
    .unwrap()
}

/// An event with input/output tokens and an optional service tier.
pub fn io(model: &str, input: i64, output: i64, tier: Option<&str>) -> UsageEvent {
    let mut e = event(model);
    e.input_tokens = input;
    e.output_tokens = output;
    e.service_tier = tier.map(str::to_owned);
    e
}
