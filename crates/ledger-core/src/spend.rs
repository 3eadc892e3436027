//! Cumulative spend aggregates, as the processor publishes them on `llm.spend.v1`.
//!
//! [`SpendUpdate`] mirrors `schemas/avro/spend_update.avsc` field for field. One update carries
//! the *cumulative* spend of one attribution key for one period bucket from one source
//! partition, so the topic can be compacted by [`SpendUpdate::key`]: a lost or repeated update
//! heals itself with the next one, and the budget enforcer rebuilds its state by reading the
//! compacted topic from the beginning.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::attribution::AttributionKey;
use crate::money::Money;

/// The only period bucket the processor emits today.
pub const BUCKET_HOUR: &str = "hour";

/// Cumulative spend of one attribution key in one UTC period bucket from one source partition.
///
/// The attribution key (`tenant_id` .. `model`) is the finest grain the processor aggregates
/// at; the enforcer sums every record that matches a budget scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendUpdate {
    /// The attribution key (the priced model included when the key has one); flat fields on
    /// the wire.
    #[serde(flatten)]
    pub scope: AttributionKey,
    /// Start of the UTC period bucket (hour-aligned for [`BUCKET_HOUR`]).
    pub period_start: DateTime<Utc>,
    /// Length of the bucket; currently always [`BUCKET_HOUR`].
    pub bucket: String,
    /// Kafka topic of the usage events.
    pub source_topic: String,
    /// Kafka partition of the usage events.
    pub source_partition: i32,
    /// Cumulative cost.
    pub cost_usd: Money,
    /// Cumulative input tokens (inclusive of cache reads and writes).
    #[serde(default)]
    pub input_tokens: i64,
    /// Cumulative output tokens (inclusive of reasoning).
    #[serde(default)]
    pub output_tokens: i64,
    /// Cumulative input plus output tokens (includes events of unknown models).
    #[serde(default)]
    pub total_tokens: i64,
    /// Cumulative number of accepted events.
    #[serde(default)]
    pub request_count: i64,
    /// Highest source partition offset included.
    pub last_offset: i64,
    /// Latest `event_time` included.
    pub max_event_time: DateTime<Utc>,
    /// When the processor emitted this update.
    pub updated_at: DateTime<Utc>,
}

impl SpendUpdate {
    /// The Kafka message key on the compacted topic `llm.spend.v1`: every identifying field
    /// (attribution, bucket, period start, source topic and partition), nothing cumulative.
    ///
    /// Format: the fields `tenant_id|team|project|user_id|api_key_id|model|bucket|period_start|
    /// source_topic|source_partition` joined by `|`, each string escaped (`\` becomes `\\`, `|`
    /// becomes `\|`), an absent optional field written as `\-` (which escaping never produces,
    /// so `None` and `Some("")` differ), `period_start` as RFC 3339 UTC. The encoding is
    /// injective and stable: changing it orphans every key on the compacted topic.
    pub fn key(&self) -> String {
        let mut k = String::with_capacity(96);
        let [tenant, rest @ ..] = self.scope.values();
        push_escaped(&mut k, tenant.unwrap_or_default());
        for part in rest {
            k.push('|');
            match part {
                Some(s) => push_escaped(&mut k, s),
                None => k.push_str("\\-"),
            }
        }
        k.push('|');
        push_escaped(&mut k, &self.bucket);
        k.push('|');
        k.push_str(&self.period_start.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        k.push('|');
        push_escaped(&mut k, &self.source_topic);
        let _ = write!(k, "|{}", self.source_partition);
        k
    }
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        if c == '\\' || c == '|' {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn sample() -> SpendUpdate {
        let t = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
        SpendUpdate {
            scope: AttributionKey {
                attribution: crate::attribution::Attribution {
                    tenant_id: "acme".into(),
                    team: Some("search".into()),
                    project: None,
                    user_id: None,
                    api_key_id: Some("k|1".into()),
                },
                model: Some("gpt-4o".into()),
            },
            period_start: t,
            bucket: BUCKET_HOUR.into(),
            source_topic: "llm.usage.v1".into(),
            source_partition: 3,
            cost_usd: Money::from_picos(2_500_000),
            input_tokens: 10,
            output_tokens: 5,
            total_tokens: 15,
            request_count: 1,
            last_offset: 42,
            max_event_time: t,
            updated_at: t,
        }
    }

    #[test]
    fn key_format() {
        assert_eq!(sample().key(), r"acme|search|\-|\-|k\|1|gpt-4o|hour|2026-11-01T12:00:00Z|llm.usage.v1|3");
    }

    #[test]
    fn key_ignores_cumulative_fields() {
        let a = sample();
        let mut b = sample();
        b.cost_usd = Money::from_usd(1);
        b.last_offset = 99;
        b.request_count = 7;
        b.updated_at += chrono::Duration::hours(1);
        assert_eq!(a.key(), b.key());
    }

    fn opt_str() -> impl Strategy<Value = Option<String>> {
        prop::option::of("[a|\\\\-]{0,3}")
    }

    proptest! {
        #[test]
        fn key_is_injective(
            a in (opt_str(), opt_str(), opt_str(), "[a|\\\\-]{0,3}", 0i32..3),
            b in (opt_str(), opt_str(), opt_str(), "[a|\\\\-]{0,3}", 0i32..3),
        ) {
            let make = |(team, project, model, tenant, part): (Option<String>, Option<String>, Option<String>, String, i32)| {
                let mut s = sample();
                s.scope.attribution.team = team;
                s.scope.attribution.project = project;
                s.scope.model = model;
                s.scope.attribution.tenant_id = tenant;
                s.source_partition = part;
                s
            };
            let (x, y) = (make(a), make(b));
            prop_assert_eq!(x.key() == y.key(), x == y);
        }
    }
}
