//! The borrowed view of an event ([`UsageEventRef`], with its [`TagsRef`]), the processor's
//! hot path, and its copy into an owned [`UsageEvent`].

use std::collections::BTreeMap;

use super::{EventTime, UsageEvent};
use crate::attribution::Attribution;
use crate::money::Money;

/// A borrowed view of a [`UsageEvent`]: the same fields as `&str`, so the processor's hot path
/// (decode, validate, price, aggregate) reads an event straight from the Kafka message without
/// allocating. [`UsageEvent::as_view`] borrows an owned event; [`UsageEventRef::to_owned_event`]
/// copies a view into an owned one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageEventRef<'a> {
    /// See [`UsageEvent::event_id`].
    pub event_id: &'a str,
    /// See [`UsageEvent::event_time`]; at the wire's precision, microseconds.
    pub event_time: EventTime,
    /// See [`UsageEvent::attribution`].
    pub attribution: Attribution<&'a str>,
    /// See [`UsageEvent::feature`].
    pub feature: Option<&'a str>,
    /// See [`UsageEvent::environment`].
    pub environment: Option<&'a str>,
    /// See [`UsageEvent::tags`].
    pub tags: TagsRef<'a>,
    /// See [`UsageEvent::provider`].
    pub provider: &'a str,
    /// See [`UsageEvent::operation`].
    pub operation: &'a str,
    /// See [`UsageEvent::request_model`].
    pub request_model: &'a str,
    /// See [`UsageEvent::response_model`].
    pub response_model: Option<&'a str>,
    /// See [`UsageEvent::routed_from_model`].
    pub routed_from_model: Option<&'a str>,
    /// See [`UsageEvent::input_tokens`].
    pub input_tokens: i64,
    /// See [`UsageEvent::cache_read_input_tokens`].
    pub cache_read_input_tokens: i64,
    /// See [`UsageEvent::cache_creation_input_tokens`].
    pub cache_creation_input_tokens: i64,
    /// See [`UsageEvent::cache_creation_1h_input_tokens`].
    pub cache_creation_1h_input_tokens: i64,
    /// See [`UsageEvent::output_tokens`].
    pub output_tokens: i64,
    /// See [`UsageEvent::reasoning_output_tokens`].
    pub reasoning_output_tokens: i64,
    /// See [`UsageEvent::service_tier`].
    pub service_tier: Option<&'a str>,
    /// See [`UsageEvent::provided_cost_usd`].
    pub provided_cost_usd: Option<Money>,
    /// See [`UsageEvent::latency_ms`].
    pub latency_ms: Option<i64>,
    /// See [`UsageEvent::status`].
    pub status: &'a str,
    /// See [`UsageEvent::response_id`].
    pub response_id: Option<&'a str>,
    /// See [`UsageEvent::trace_id`].
    pub trace_id: Option<&'a str>,
}

/// The tags of a [`UsageEventRef`]: an owned event's map, or pairs read from a message.
/// Two are equal when they hold the same map.
#[derive(Debug, Clone, Copy)]
pub enum TagsRef<'a> {
    /// The map of an owned event.
    Map(&'a BTreeMap<String, String>),
    /// Pairs in wire order (a later duplicate key wins, as in a map built from them).
    Pairs(&'a [(&'a str, &'a str)]),
}

impl PartialEq for TagsRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (TagsRef::Map(a), TagsRef::Map(b)) => a == b,
            _ => self.to_map() == other.to_map(),
        }
    }
}

impl Eq for TagsRef<'_> {}

impl<'a> TagsRef<'a> {
    /// The tags as an owned map.
    pub fn to_map(self) -> BTreeMap<String, String> {
        match self {
            TagsRef::Map(m) => m.clone(),
            TagsRef::Pairs(p) => p.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }
}

impl<'a> UsageEventRef<'a> {
    /// Copies the view into an owned event.
    pub fn to_owned_event(&self) -> UsageEvent {
        let own = |s: Option<&str>| s.map(str::to_owned);
        UsageEvent {
            event_id: self.event_id.to_owned(),
            event_time: self.event_time.to_datetime(),
            attribution: self.attribution.to_owned_attribution(),
            feature: own(self.feature),
            environment: own(self.environment),
            tags: self.tags.to_map(),
            provider: self.provider.to_owned(),
            operation: self.operation.to_owned(),
            request_model: self.request_model.to_owned(),
            response_model: own(self.response_model),
            routed_from_model: own(self.routed_from_model),
            input_tokens: self.input_tokens,
            cache_read_input_tokens: self.cache_read_input_tokens,
            cache_creation_input_tokens: self.cache_creation_input_tokens,
            cache_creation_1h_input_tokens: self.cache_creation_1h_input_tokens,
            output_tokens: self.output_tokens,
            reasoning_output_tokens: self.reasoning_output_tokens,
            service_tier: own(self.service_tier),
            provided_cost_usd: self.provided_cost_usd,
            latency_ms: self.latency_ms,
            status: self.status.to_owned(),
            response_id: own(self.response_id),
            trace_id: own(self.trace_id),
        }
    }
}
