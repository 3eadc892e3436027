//! The datum mapping of each record: private wire structs that match the `.avsc` files field
//! for field (timestamps as `i64` microseconds, money as decimal strings), converted to and
//! from the `ledger-core` types.
//!
//! Encoding borrows from the core value; decoding moves the decoded strings into the core value
//! and borrows the money strings from the input (parsed without an extra allocation).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use ledger_core::attribution::{Attribution, AttributionKey};
use ledger_core::signal::{BudgetPeriod, BudgetSignal, BudgetState, Enforcement};
use ledger_core::spend::SpendUpdate;
use ledger_core::{Money, UsageEvent};
use serde::{Deserialize, Serialize};
use serde_avro_fast::de::{DeserializerConfig, DeserializerState};

use crate::error::SchemaError;
use crate::schema::{AvroRecord, RecordSchema};

pub(crate) fn micros(t: &DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn time(record: &'static str, field: &'static str, micros: i64) -> Result<DateTime<Utc>, SchemaError> {
    DateTime::<Utc>::from_timestamp_micros(micros).ok_or(SchemaError::TimestampOutOfRange { record, field, micros })
}

pub(crate) fn money(record: &'static str, field: &'static str, text: &str) -> Result<Money, SchemaError> {
    text.parse().map_err(|source| SchemaError::InvalidMoney { record, field, source })
}

fn opt_money(record: &'static str, field: &'static str, text: Option<&str>) -> Result<Option<Money>, SchemaError> {
    text.map(|t| money(record, field, t)).transpose()
}

/// Checks that `m` reads back: `Money`'s parser accepts `-i128::MAX..=i128::MAX` pico-dollars,
/// so `i128::MIN` (far outside `Decimal(38, 12)` anyway) is refused rather than written.
pub(crate) fn money_out(record: &'static str, field: &'static str, m: Money) -> Result<Money, SchemaError> {
    if m.picos() == i128::MIN {
        return Err(SchemaError::Unencodable { record, field, detail: "amount out of the money range".to_owned() });
    }
    Ok(m)
}

fn opt_money_out(record: &'static str, field: &'static str, m: Option<Money>) -> Result<Option<Money>, SchemaError> {
    m.map(|m| money_out(record, field, m)).transpose()
}

/// Writes the datum of `wire` (no header) to `out`.
pub(crate) fn write<W: Serialize>(
    record: &'static str,
    schema: &serde_avro_fast::Schema,
    wire: &W,
    out: &mut Vec<u8>,
) -> Result<(), SchemaError> {
    let mut config = serde_avro_fast::ser::SerializerConfig::new(schema);
    serde_avro_fast::to_datum(wire, &mut *out, &mut config).map_err(|source| SchemaError::Encode { record, source })?;
    Ok(())
}

/// Reads one complete datum: an error on malformed input or trailing bytes.
pub(crate) fn read<'a, W: Deserialize<'a>>(
    record: &'static str,
    schema: &serde_avro_fast::Schema,
    datum: &'a [u8],
) -> Result<W, SchemaError> {
    let mut config = DeserializerConfig::new(schema);
    // Every map entry takes at least two bytes: no block count can exceed the datum length.
    config.max_seq_size = datum.len();
    let mut state = DeserializerState::with_config(serde_avro_fast::de::read::SliceRead::new(datum), config);
    let wire = W::deserialize(state.deserializer()).map_err(|source| SchemaError::Datum { record, source })?;
    let rest = std::io::BufRead::fill_buf(&mut state.into_reader()).map(<[u8]>::len).unwrap_or(0);
    if rest != 0 {
        return Err(SchemaError::TrailingBytes { record, count: rest });
    }
    Ok(wire)
}

/// Defines a decode-side wire struct whose `Deserialize` takes the record's fields in schema
/// order, checking each key with one string comparison instead of serde derive's match over
/// every field name (about a quarter of the datum parsing time of a `UsageEvent`). A field
/// order that differs from the schema is an error, never a silent mix-up (and the property
/// tests against apache-avro would catch it).
macro_rules! wire_in {
    ($name:ident<$lt:lifetime> { $($field:ident : $ty:ty),* $(,)? }) => {
        struct $name<$lt> {
            $($field: $ty,)*
        }

        impl<'de: $lt, $lt> Deserialize<'de> for $name<$lt> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Fields<$lt>(std::marker::PhantomData<&$lt ()>);
                impl<'de: $lt, $lt> serde::de::Visitor<'de> for Fields<$lt> {
                    type Value = $name<$lt>;

                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("the record ", stringify!($name)))
                    }

                    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                        Ok($name {
                            $($field: {
                                match map.next_key_seed(ExpectKey(stringify!($field)))? {
                                    Some(()) => map.next_value::<$ty>()?,
                                    None => return Err(serde::de::Error::missing_field(stringify!($field))),
                                }
                            },)*
                        })
                    }
                }
                d.deserialize_struct(stringify!($name), &[$(stringify!($field)),*], Fields(std::marker::PhantomData))
            }
        }
    };
}

/// Accepts exactly one record field name.
struct ExpectKey(&'static str);

impl<'de> serde::de::DeserializeSeed<'de> for ExpectKey {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ExpectKey {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the field `{}`", self.0)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        if v == self.0 {
            Ok(())
        } else {
            Err(E::custom(format_args!("expected field `{}`, found `{v}`", self.0)))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// UsageEvent

const USAGE_EVENT: &str = "UsageEvent";

#[cfg(test)]
#[derive(Serialize)]
struct UsageEventOut<'a> {
    event_id: &'a str,
    event_time: i64,
    tenant_id: &'a str,
    team: Option<&'a str>,
    project: Option<&'a str>,
    user_id: Option<&'a str>,
    api_key_id: Option<&'a str>,
    feature: Option<&'a str>,
    environment: Option<&'a str>,
    tags: &'a BTreeMap<String, String>,
    provider: &'a str,
    operation: &'a str,
    request_model: &'a str,
    response_model: Option<&'a str>,
    routed_from_model: Option<&'a str>,
    input_tokens: i64,
    cache_read_input_tokens: i64,
    cache_creation_input_tokens: i64,
    cache_creation_1h_input_tokens: i64,
    output_tokens: i64,
    reasoning_output_tokens: i64,
    service_tier: Option<&'a str>,
    provided_cost_usd: Option<Money>,
    latency_ms: Option<i64>,
    status: &'a str,
    response_id: Option<&'a str>,
    trace_id: Option<&'a str>,
}

impl AvroRecord for UsageEvent {
    const NAME: &'static str = USAGE_EVENT;
    const AVSC: &'static str = include_str!("../../../schemas/avro/usage_event.avsc");
    const HISTORY: &'static [&'static str] = &[include_str!("../../../schemas/avro/history/usage_event/v1.avsc")];

    fn schema_cell() -> &'static OnceLock<RecordSchema> {
        static CELL: OnceLock<RecordSchema> = OnceLock::new();
        &CELL
    }

    fn write_datum(&self, _schema: &serde_avro_fast::Schema, out: &mut Vec<u8>) -> Result<(), SchemaError> {
        // The hot path of the emitters: a hand-written writer of the current schema's datum
        // (see the usage_fast module); a test holds it to the generic serde writer below.
        crate::usage_fast::encode_into(self, out)
    }

    fn read_datum(_schema: &serde_avro_fast::Schema, datum: &[u8]) -> Result<Self, SchemaError> {
        // The hot path of the processor: a hand-written reader of the current schema's datum
        // (see the usage_fast module); property tests hold it to apache-avro.
        crate::usage_fast::decode(datum)
    }
}

/// The generic serde writer of a `UsageEvent` datum: the reference of the hand-written one.
#[cfg(test)]
pub(crate) fn usage_event_datum_by_serde(
    e: &UsageEvent,
    schema: &serde_avro_fast::Schema,
    out: &mut Vec<u8>,
) -> Result<(), SchemaError> {
    let wire = UsageEventOut {
        event_id: &e.event_id,
        event_time: micros(&e.event_time),
        tenant_id: &e.attribution.tenant_id,
        team: e.attribution.team.as_deref(),
        project: e.attribution.project.as_deref(),
        user_id: e.attribution.user_id.as_deref(),
        api_key_id: e.attribution.api_key_id.as_deref(),
        feature: e.feature.as_deref(),
        environment: e.environment.as_deref(),
        tags: &e.tags,
        provider: &e.provider,
        operation: &e.operation,
        request_model: &e.request_model,
        response_model: e.response_model.as_deref(),
        routed_from_model: e.routed_from_model.as_deref(),
        input_tokens: e.input_tokens,
        cache_read_input_tokens: e.cache_read_input_tokens,
        cache_creation_input_tokens: e.cache_creation_input_tokens,
        cache_creation_1h_input_tokens: e.cache_creation_1h_input_tokens,
        output_tokens: e.output_tokens,
        reasoning_output_tokens: e.reasoning_output_tokens,
        service_tier: e.service_tier.as_deref(),
        provided_cost_usd: opt_money_out(USAGE_EVENT, "provided_cost_usd", e.provided_cost_usd)?,
        latency_ms: e.latency_ms,
        status: &e.status,
        response_id: e.response_id.as_deref(),
        trace_id: e.trace_id.as_deref(),
    };
    write(USAGE_EVENT, schema, &wire, out)
}

// ---------------------------------------------------------------------------------------------
// SpendUpdate

const SPEND_UPDATE: &str = "SpendUpdate";

#[derive(Serialize)]
struct SpendUpdateOut<'a> {
    tenant_id: &'a str,
    team: Option<&'a str>,
    project: Option<&'a str>,
    user_id: Option<&'a str>,
    api_key_id: Option<&'a str>,
    model: Option<&'a str>,
    period_start: i64,
    bucket: &'a str,
    source_topic: &'a str,
    source_partition: i32,
    cost_usd: Money,
    input_tokens: i64,
    output_tokens: i64,
    total_tokens: i64,
    request_count: i64,
    last_offset: i64,
    max_event_time: i64,
    updated_at: i64,
}

wire_in!(SpendUpdateIn<'a> {
    tenant_id: String,
    team: Option<String>,
    project: Option<String>,
    user_id: Option<String>,
    api_key_id: Option<String>,
    model: Option<String>,
    period_start: i64,
    bucket: String,
    source_topic: String,
    source_partition: i32,
    cost_usd: &'a str,
    input_tokens: i64,
    output_tokens: i64,
    total_tokens: i64,
    request_count: i64,
    last_offset: i64,
    max_event_time: i64,
    updated_at: i64,
});

impl AvroRecord for SpendUpdate {
    const NAME: &'static str = SPEND_UPDATE;
    const AVSC: &'static str = include_str!("../../../schemas/avro/spend_update.avsc");
    const HISTORY: &'static [&'static str] = &[include_str!("../../../schemas/avro/history/spend_update/v1.avsc")];

    fn schema_cell() -> &'static OnceLock<RecordSchema> {
        static CELL: OnceLock<RecordSchema> = OnceLock::new();
        &CELL
    }

    fn write_datum(&self, schema: &serde_avro_fast::Schema, out: &mut Vec<u8>) -> Result<(), SchemaError> {
        let s = self;
        let wire = SpendUpdateOut {
            tenant_id: &s.scope.attribution.tenant_id,
            team: s.scope.attribution.team.as_deref(),
            project: s.scope.attribution.project.as_deref(),
            user_id: s.scope.attribution.user_id.as_deref(),
            api_key_id: s.scope.attribution.api_key_id.as_deref(),
            model: s.scope.model.as_deref(),
            period_start: micros(&s.period_start),
            bucket: &s.bucket,
            source_topic: &s.source_topic,
            source_partition: s.source_partition,
            cost_usd: money_out(SPEND_UPDATE, "cost_usd", s.cost_usd)?,
            input_tokens: s.input_tokens,
            output_tokens: s.output_tokens,
            total_tokens: s.total_tokens,
            request_count: s.request_count,
            last_offset: s.last_offset,
            max_event_time: micros(&s.max_event_time),
            updated_at: micros(&s.updated_at),
        };
        write(SPEND_UPDATE, schema, &wire, out)
    }

    fn read_datum(schema: &serde_avro_fast::Schema, datum: &[u8]) -> Result<Self, SchemaError> {
        let w: SpendUpdateIn<'_> = read(SPEND_UPDATE, schema, datum)?;
        Ok(SpendUpdate {
            scope: AttributionKey {
                attribution: Attribution {
                    tenant_id: w.tenant_id,
                    team: w.team,
                    project: w.project,
                    user_id: w.user_id,
                    api_key_id: w.api_key_id,
                },
                model: w.model,
            },
            period_start: time(SPEND_UPDATE, "period_start", w.period_start)?,
            bucket: w.bucket,
            source_topic: w.source_topic,
            source_partition: w.source_partition,
            cost_usd: money(SPEND_UPDATE, "cost_usd", w.cost_usd)?,
            input_tokens: w.input_tokens,
            output_tokens: w.output_tokens,
            total_tokens: w.total_tokens,
            request_count: w.request_count,
            last_offset: w.last_offset,
            max_event_time: time(SPEND_UPDATE, "max_event_time", w.max_event_time)?,
            updated_at: time(SPEND_UPDATE, "updated_at", w.updated_at)?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// BudgetSignal

const BUDGET_SIGNAL: &str = "BudgetSignal";

#[derive(Serialize)]
struct BudgetSignalOut<'a> {
    scope: &'a str,
    scope_fields: &'a BTreeMap<String, String>,
    period: &'a str,
    period_start: i64,
    period_end: i64,
    state: BudgetState,
    action: &'a str,
    spend_usd: Money,
    limit_usd: Option<Money>,
    remaining_usd: Option<Money>,
    spent_tokens: i64,
    limit_tokens: Option<i64>,
    burn_rate_usd_per_hour: Money,
    projected_exhaustion: Option<i64>,
    throttle_fraction_ppm: Option<i32>,
    throttle_rate_per_sec: Option<i32>,
    retry_after_ms: Option<i64>,
    reroute: &'a BTreeMap<String, String>,
    valid_until: i64,
    reason: &'a str,
    sequence: i64,
    emitted_at: i64,
    enforcement: &'a str,
}

wire_in!(BudgetSignalIn<'a> {
    scope: String,
    scope_fields: BTreeMap<String, String>,
    period: &'a str,
    period_start: i64,
    period_end: i64,
    state: BudgetState,
    action: String,
    spend_usd: &'a str,
    limit_usd: Option<&'a str>,
    remaining_usd: Option<&'a str>,
    spent_tokens: i64,
    limit_tokens: Option<i64>,
    burn_rate_usd_per_hour: &'a str,
    projected_exhaustion: Option<i64>,
    throttle_fraction_ppm: Option<i32>,
    throttle_rate_per_sec: Option<i32>,
    retry_after_ms: Option<i64>,
    reroute: BTreeMap<String, String>,
    valid_until: i64,
    reason: String,
    sequence: i64,
    emitted_at: i64,
    enforcement: &'a str,
});

impl AvroRecord for BudgetSignal {
    const NAME: &'static str = BUDGET_SIGNAL;
    const AVSC: &'static str = include_str!("../../../schemas/avro/budget_signal.avsc");
    const HISTORY: &'static [&'static str] = &[
        include_str!("../../../schemas/avro/history/budget_signal/v1.avsc"),
        include_str!("../../../schemas/avro/history/budget_signal/v2.avsc"),
        include_str!("../../../schemas/avro/history/budget_signal/v3.avsc"),
    ];

    fn schema_cell() -> &'static OnceLock<RecordSchema> {
        static CELL: OnceLock<RecordSchema> = OnceLock::new();
        &CELL
    }

    fn write_datum(&self, schema: &serde_avro_fast::Schema, out: &mut Vec<u8>) -> Result<(), SchemaError> {
        let s = self;
        let throttle_fraction_ppm = s
            .throttle_fraction_ppm
            .map(|ppm| {
                i32::try_from(ppm).map_err(|_| SchemaError::Unencodable {
                    record: BUDGET_SIGNAL,
                    field: "throttle_fraction_ppm",
                    detail: format!("{ppm} does not fit an Avro int"),
                })
            })
            .transpose()?;
        let throttle_rate_per_sec = s
            .throttle_rate_per_sec
            .map(|rate| {
                i32::try_from(rate).map_err(|_| SchemaError::Unencodable {
                    record: BUDGET_SIGNAL,
                    field: "throttle_rate_per_sec",
                    detail: format!("{rate} does not fit an Avro int"),
                })
            })
            .transpose()?;
        let wire = BudgetSignalOut {
            scope: &s.scope,
            scope_fields: &s.scope_fields,
            period: s.period.as_str(),
            period_start: micros(&s.period_start),
            period_end: micros(&s.period_end),
            state: s.state,
            action: &s.action,
            spend_usd: money_out(BUDGET_SIGNAL, "spend_usd", s.spend_usd)?,
            limit_usd: opt_money_out(BUDGET_SIGNAL, "limit_usd", s.limit_usd)?,
            remaining_usd: opt_money_out(BUDGET_SIGNAL, "remaining_usd", s.remaining_usd)?,
            spent_tokens: s.spent_tokens,
            limit_tokens: s.limit_tokens,
            burn_rate_usd_per_hour: money_out(BUDGET_SIGNAL, "burn_rate_usd_per_hour", s.burn_rate_usd_per_hour)?,
            projected_exhaustion: s.projected_exhaustion.as_ref().map(micros),
            throttle_fraction_ppm,
            throttle_rate_per_sec,
            retry_after_ms: s.retry_after_ms,
            reroute: &s.reroute,
            valid_until: micros(&s.valid_until),
            reason: &s.reason,
            sequence: s.sequence,
            emitted_at: micros(&s.emitted_at),
            enforcement: s.enforcement.as_str(),
        };
        write(BUDGET_SIGNAL, schema, &wire, out)
    }

    fn read_datum(schema: &serde_avro_fast::Schema, datum: &[u8]) -> Result<Self, SchemaError> {
        const R: &str = BUDGET_SIGNAL;
        let w: BudgetSignalIn<'_> = read(R, schema, datum)?;
        let period = BudgetPeriod::parse(w.period).ok_or_else(|| SchemaError::InvalidValue {
            record: R,
            field: "period",
            detail: format!("unknown budget period {:?} (expected day, week or month)", w.period),
        })?;
        let throttle_fraction_ppm = w
            .throttle_fraction_ppm
            .map(|ppm| {
                u32::try_from(ppm).map_err(|_| SchemaError::InvalidValue {
                    record: R,
                    field: "throttle_fraction_ppm",
                    detail: format!("negative fraction {ppm}"),
                })
            })
            .transpose()?;
        let throttle_rate_per_sec = w
            .throttle_rate_per_sec
            .map(|rate| {
                u32::try_from(rate).map_err(|_| SchemaError::InvalidValue {
                    record: R,
                    field: "throttle_rate_per_sec",
                    detail: format!("negative rate {rate}"),
                })
            })
            .transpose()?;
        Ok(BudgetSignal {
            scope: w.scope,
            scope_fields: w.scope_fields,
            period,
            period_start: time(R, "period_start", w.period_start)?,
            period_end: time(R, "period_end", w.period_end)?,
            state: w.state,
            action: w.action,
            spend_usd: money(R, "spend_usd", w.spend_usd)?,
            limit_usd: opt_money(R, "limit_usd", w.limit_usd)?,
            remaining_usd: opt_money(R, "remaining_usd", w.remaining_usd)?,
            spent_tokens: w.spent_tokens,
            limit_tokens: w.limit_tokens,
            burn_rate_usd_per_hour: money(R, "burn_rate_usd_per_hour", w.burn_rate_usd_per_hour)?,
            projected_exhaustion: w.projected_exhaustion.map(|m| time(R, "projected_exhaustion", m)).transpose()?,
            throttle_fraction_ppm,
            throttle_rate_per_sec,
            retry_after_ms: w.retry_after_ms,
            reroute: w.reroute,
            valid_until: time(R, "valid_until", w.valid_until)?,
            reason: w.reason,
            sequence: w.sequence,
            emitted_at: time(R, "emitted_at", w.emitted_at)?,
            enforcement: Enforcement::parse(w.enforcement).ok_or_else(|| SchemaError::InvalidValue {
                record: R,
                field: "enforcement",
                detail: format!("unknown enforcement {:?} (expected signal or lease)", w.enforcement),
            })?,
        })
    }
}
