//! The per-event decision: accept (priced), duplicate, or reject with a reason. Pure: the
//! clock and the partition's dedupe window are arguments, so every branch is tested here
//! without a broker.

use ledger_core::acceptance::AcceptanceRules;
use ledger_core::catalog::Catalog;
use ledger_core::dedupe::{DedupeWindow, IdFingerprint};
use ledger_core::event::{Rejection, TokenCounts};
use ledger_core::pricing::PricedRef;
use ledger_core::UsageEventRef;

/// What becomes of one decoded event.
// Returned by value once per event and consumed at once: boxing the priced variant would
// allocate per event on the hot path to save a 256-byte move.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Verdict<'c> {
    /// Priced: its row goes into the batch and its id into the dedupe window.
    Accept(PricedRef<'c>, TokenCounts, IdFingerprint),
    /// A resend of an event the partition accepted within the dedupe horizon.
    Duplicate,
    /// Dead-lettered with this reason.
    Reject(Rejection),
}

/// Applies the acceptance rules, then the dedupe window, then the catalog, in that order: an
/// invalid resend is rejected like the original was, and a duplicate is never priced.
pub(crate) fn decide<'c>(
    catalog: &'c Catalog,
    rules: &AcceptanceRules,
    event: &UsageEventRef<'_>,
    dedupe: &DedupeWindow,
    now_ms: i64,
) -> Verdict<'c> {
    let tokens = match rules.check(event, now_ms) {
        Ok(t) => t,
        Err(r) => return Verdict::Reject(r),
    };
    let id = dedupe.fingerprint(event.event_id);
    if dedupe.contains_fingerprint(id) {
        return Verdict::Duplicate;
    }
    match catalog.price_view(event, &tokens) {
        Ok(priced) => Verdict::Accept(priced, tokens, id),
        Err(r) => Verdict::Reject(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use ledger_core::catalog::CatalogSource;
    use ledger_core::event::RejectReason;
    use ledger_core::UsageEvent;

    fn catalog() -> Catalog {
        let json =
            r#"{"gpt-4o": {"litellm_provider": "openai", "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05}}"#;
        let (source, _) = CatalogSource::from_litellm_json("test", DateTime::UNIX_EPOCH, json).unwrap();
        Catalog::new(vec![source]).unwrap()
    }

    fn event(id: &str, model: &str) -> UsageEvent {
        let at: DateTime<Utc> = "2026-11-01T12:00:00Z".parse().unwrap();
        let mut e = UsageEvent::new(id.into(), at, "acme".into(), "openai".into(), model.into());
        e.input_tokens = 1000;
        e.output_tokens = 100;
        e
    }

    fn now_of(e: &UsageEvent) -> i64 {
        e.event_time.timestamp_millis()
    }

    #[test]
    fn a_valid_event_of_a_known_model_is_priced() {
        let (catalog, window) = (catalog(), DedupeWindow::new(3_600_000, 100));
        let e = event("e1", "gpt-4o");
        match decide(&catalog, &AcceptanceRules::default(), &e.as_view(), &window, now_of(&e)) {
            // 1000 x 2.5e-6 + 100 x 1e-5 = 0.0035 USD.
            Verdict::Accept(priced, tokens, _) => {
                assert_eq!(priced.cost.to_string(), "0.003500000000");
                assert_eq!((tokens.input, tokens.output), (1000, 100));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_resend_within_the_horizon_is_a_duplicate() {
        let (catalog, mut window) = (catalog(), DedupeWindow::new(3_600_000, 100));
        let e = event("e1", "gpt-4o");
        let Verdict::Accept(_, _, id) = decide(&catalog, &AcceptanceRules::default(), &e.as_view(), &window, now_of(&e)) else {
            panic!("accepted first")
        };
        window.insert_fingerprint(id, now_of(&e));
        assert!(matches!(decide(&catalog, &AcceptanceRules::default(), &e.as_view(), &window, now_of(&e)), Verdict::Duplicate));
    }

    #[test]
    fn each_rule_rejects_with_its_reason() {
        let (catalog, window) = (catalog(), DedupeWindow::new(3_600_000, 100));
        let rules = AcceptanceRules::default();
        let reason = |e: &UsageEvent, now_ms: i64| match decide(&catalog, &rules, &e.as_view(), &window, now_ms) {
            Verdict::Reject(r) => r.reason,
            other => panic!("{other:?}"),
        };
        let e = event("e1", "brand-new-model");
        assert_eq!(reason(&e, now_of(&e)), RejectReason::UnknownModel);
        let mut e = event("e2", "gpt-4o");
        e.reasoning_output_tokens = 101;
        assert_eq!(reason(&e, now_of(&e)), RejectReason::InconsistentTokens);
        let e = event("e3", "gpt-4o");
        assert_eq!(reason(&e, now_of(&e) + 36 * 86_400_000), RejectReason::TooOld);
        assert_eq!(reason(&e, now_of(&e) - 301_000), RejectReason::InFuture);
    }

    #[test]
    fn an_invalid_resend_of_an_accepted_id_is_still_rejected() {
        let (catalog, mut window) = (catalog(), DedupeWindow::new(3_600_000, 100));
        let mut e = event("e1", "gpt-4o");
        window.insert(&e.event_id, now_of(&e));
        e.input_tokens = -5;
        let Verdict::Reject(r) = decide(&catalog, &AcceptanceRules::default(), &e.as_view(), &window, now_of(&e)) else {
            panic!("rejected")
        };
        assert_eq!(r.reason, RejectReason::NegativeTokens);
    }
}
