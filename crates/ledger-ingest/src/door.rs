//! What the processor would reject, refused at the door so the client hears about it (400)
//! instead of finding a dead letter later: the same rules, applied by the same code.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ledger_core::acceptance::AcceptanceRules;
use ledger_core::catalog::Catalog;
use ledger_core::event::RejectReason;
use ledger_core::{EventTime, UsageEvent};

use crate::validate::FieldError;

/// What the processor would reject, checked at the door so the client hears about it: its
/// acceptance rules (time window, absolute token cap) and the catalog's per-model token limits.
/// Each part is optional; the default checks neither.
#[derive(Debug, Clone, Default)]
pub struct Door {
    /// The processor's acceptance rules.
    pub rules: Option<AcceptanceRules>,
    /// The processor's catalog, for per-model token limits.
    pub catalog: Option<Arc<Catalog>>,
}

/// What the [`Door`] checks: the rules the processor applies ([`AcceptanceRules::check_plausible`],
/// [`AcceptanceRules::check_time`], [`Catalog::check_limits`]).
pub(crate) fn check_window(
    index: usize,
    event: UsageEvent,
    door: &Door,
    now: DateTime<Utc>,
    errors: &mut Vec<FieldError>,
) -> Option<UsageEvent> {
    if let Some(catalog) = &door.catalog {
        if let Err(r) = catalog.check_limits(&event) {
            let field = r.detail.split_whitespace().next().unwrap_or("event").to_owned();
            errors.push(FieldError::at(index, &field, format!("{}: the ledger would reject it as {}", r.detail, r.reason)));
            return None;
        }
    }
    if let Some(rules) = &door.rules {
        let view = event.as_view();
        let plausible = event.validate().and_then(|tokens| rules.check_plausible(&view, &tokens));
        if let Err(r) = plausible {
            // The detail starts with the field's name.
            let field = r.detail.split_whitespace().next().unwrap_or("event").to_owned();
            errors.push(FieldError::at(index, &field, format!("{}: the ledger would reject it as {}", r.detail, r.reason)));
            return None;
        }
        if let Err(r) = rules.check_time(EventTime::from_datetime(event.event_time), now.timestamp_millis()) {
            let hint = if r.reason == RejectReason::InFuture { " (check the sender's clock)" } else { "" };
            errors.push(FieldError::at(
                index,
                "event_time",
                format!("{}: the ledger would reject it as {}{hint}", r.detail, r.reason),
            ));
            return None;
        }
    }
    Some(event)
}
