//! Shared test support: proptest strategies for the three record types and an independent
//! reference mapping of each to apache-avro `Value`s (built by hand from the `.avsc` field
//! list, sharing no code with the crate's fast path).

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};

use apache_avro::types::Value;
use chrono::{DateTime, Utc};
use ledger_core::attribution::{Attribution, AttributionKey};
use ledger_core::lease::{LeaseGrant, LeaseRequest, LeaseReturn, LeaseStatus};
use ledger_core::signal::{BudgetPeriod, BudgetSignal, BudgetState, Enforcement};
use ledger_core::spend::SpendUpdate;
use ledger_core::{Money, UsageEvent};
use proptest::prelude::*;

// ----------------------------------------------------------------- strategies

/// Any string, including unicode, empty, `|` and control characters.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => ".{0,12}",
        1 => Just(String::new()),
        1 => "[a-z|\\\\]{1,6}",
        1 => "[\u{0}-\u{7f}]{0,8}",
        1 => "(é|日本語|🦀|\u{200b}|Ω){1,4}",
    ]
}

pub fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(text())
}

pub fn tags() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop_oneof![Just(BTreeMap::new()), prop::collection::btree_map(text(), text(), 0..6)]
}

/// Whole microseconds within chrono's range (the wire precision).
pub fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let min = DateTime::<Utc>::MIN_UTC.timestamp_micros();
    let max = DateTime::<Utc>::MAX_UTC.timestamp_micros();
    prop_oneof![
        4 => 1_500_000_000_000_000i64..2_500_000_000_000_000i64,
        1 => min..=max,
        1 => prop_oneof![Just(min), Just(max), Just(0i64), Just(-1i64)],
    ]
    .prop_map(|m| DateTime::<Utc>::from_timestamp_micros(m).unwrap())
}

/// Any amount `Money` can parse back (`i128::MIN` cannot, see `money_min_is_refused_not_written`).
pub fn money() -> impl Strategy<Value = Money> {
    prop_oneof![
        4 => 0i128..1_000_000_000_000_000i128,
        1 => (i128::MIN + 1)..=i128::MAX,
        1 => prop_oneof![Just(0i128), Just(1), Just(-1), Just(i128::MAX), Just(i128::MIN + 1)],
    ]
    .prop_map(Money::from_picos)
}

pub fn count() -> impl Strategy<Value = i64> {
    prop_oneof![4 => 0i64..10_000_000, 1 => any::<i64>()]
}

prop_compose! {
    fn usage_head()(
        event_id in text(), event_time in instant(), tenant_id in text(),
        team in opt_text(), project in opt_text(), user_id in opt_text(), api_key_id in opt_text(),
        feature in opt_text(), environment in opt_text(), tags in tags(),
        provider in text(), operation in text(), request_model in text(),
    ) -> (String, DateTime<Utc>, String, [Option<String>; 6], BTreeMap<String, String>, String, String, String) {
        (event_id, event_time, tenant_id, [team, project, user_id, api_key_id, feature, environment], tags, provider, operation, request_model)
    }
}

prop_compose! {
    fn usage_event_inner()(
        head in usage_head().boxed(),
        response_model in opt_text(), routed_from_model in opt_text(),
        tokens in prop::array::uniform6(count()),
        service_tier in opt_text(), provided_cost_usd in prop::option::of(money()),
        latency_ms in prop::option::of(any::<i64>()), status in text(),
        response_id in opt_text(), trace_id in opt_text(),
    ) -> UsageEvent {
        let (event_id, event_time, tenant_id, [team, project, user_id, api_key_id, feature, environment], tags, provider, operation, request_model) = head;
        UsageEvent {
            event_id, event_time, attribution: Attribution { tenant_id, team, project, user_id, api_key_id }, feature, environment, tags,
            provider, operation, request_model, response_model, routed_from_model,
            input_tokens: tokens[0], cache_read_input_tokens: tokens[1], cache_creation_input_tokens: tokens[2],
            cache_creation_1h_input_tokens: tokens[3], output_tokens: tokens[4], reasoning_output_tokens: tokens[5],
            service_tier, provided_cost_usd, latency_ms, status, response_id, trace_id,
        }
    }
}

prop_compose! {
    fn spend_update_inner()(
        tenant_id in text(), ids in prop::array::uniform5(opt_text()),
        period_start in instant(), bucket in text(), source_topic in text(), source_partition in any::<i32>(),
        cost_usd in money(), tokens in prop::array::uniform4(count()), last_offset in any::<i64>(),
        max_event_time in instant(), updated_at in instant(),
    ) -> SpendUpdate {
        let [team, project, user_id, api_key_id, model] = ids;
        SpendUpdate {
            scope: AttributionKey { attribution: Attribution { tenant_id, team, project, user_id, api_key_id }, model },
            period_start, bucket, source_topic, source_partition,
            cost_usd, input_tokens: tokens[0], output_tokens: tokens[1], total_tokens: tokens[2], request_count: tokens[3],
            last_offset, max_event_time, updated_at,
        }
    }
}

pub fn state() -> impl Strategy<Value = BudgetState> {
    prop::sample::select(BudgetState::ALL.to_vec())
}

pub fn period() -> impl Strategy<Value = BudgetPeriod> {
    prop::sample::select(BudgetPeriod::ALL.to_vec())
}

prop_compose! {
    fn signal_head()(
        scope in text(), scope_fields in tags(), period in period(), period_start in instant(), period_end in instant(),
        state in state(), action in text(), spend_usd in money(), limit_usd in prop::option::of(money()),
        remaining_usd in prop::option::of(money()), spent_tokens in count(),
    ) -> (String, BTreeMap<String, String>, BudgetPeriod, DateTime<Utc>, DateTime<Utc>, BudgetState, String, Money, Option<Money>, Option<Money>, i64) {
        (scope, scope_fields, period, period_start, period_end, state, action, spend_usd, limit_usd, remaining_usd, spent_tokens)
    }
}

prop_compose! {
    fn budget_signal_inner()(
        head in signal_head().boxed(),
        limit_tokens in prop::option::of(count()), burn_rate_usd_per_hour in money(),
        projected_exhaustion in prop::option::of(instant()), throttle_fraction_ppm in prop::option::of(0u32..=i32::MAX as u32),
        throttle_rate_per_sec in prop::option::of(0u32..=i32::MAX as u32),
        retry_after_ms in prop::option::of(any::<i64>()), reroute in tags(), valid_until in instant(),
        reason in text(), sequence in any::<i64>(), emitted_at in instant(), lease in any::<bool>(),
    ) -> BudgetSignal {
        let (scope, scope_fields, period, period_start, period_end, state, action, spend_usd, limit_usd, remaining_usd, spent_tokens) = head;
        BudgetSignal {
            scope, scope_fields, period, period_start, period_end, state, action, spend_usd, limit_usd, remaining_usd,
            spent_tokens, limit_tokens, burn_rate_usd_per_hour, projected_exhaustion, throttle_fraction_ppm,
            throttle_rate_per_sec, retry_after_ms, reroute, valid_until, reason, sequence, emitted_at,
            enforcement: if lease { Enforcement::Lease } else { Enforcement::Signal },
        }
    }
}

/// Boxed: the nested strategy types otherwise overflow the test thread's stack in debug builds.
pub fn usage_event() -> BoxedStrategy<UsageEvent> {
    usage_event_inner().boxed()
}

pub fn spend_update() -> BoxedStrategy<SpendUpdate> {
    spend_update_inner().boxed()
}

pub fn budget_signal() -> BoxedStrategy<BudgetSignal> {
    budget_signal_inner().boxed()
}

// ----------------------------------------------------------------- fully populated samples

pub fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

pub fn full_usage_event() -> UsageEvent {
    UsageEvent {
        event_id: "01J0-évènement-🦀".into(),
        event_time: t("2026-11-01T12:34:56.123456Z"),
        attribution: Attribution {
            tenant_id: "acme".into(),
            team: Some("search".into()),
            project: Some("ranker".into()),
            user_id: Some("u-1".into()),
            api_key_id: Some("key|1".into()),
        },
        feature: Some("autocomplete".into()),
        environment: Some("prod".into()),
        tags: BTreeMap::from([("region".into(), "eu".into()), ("日本".into(), "語".into())]),
        provider: "openai".into(),
        operation: "chat".into(),
        request_model: "gpt-4o".into(),
        response_model: Some("gpt-4o-2024-08-06".into()),
        routed_from_model: Some("gpt-4.1".into()),
        input_tokens: 1000,
        cache_read_input_tokens: 200,
        cache_creation_input_tokens: 100,
        cache_creation_1h_input_tokens: 50,
        output_tokens: 300,
        reasoning_output_tokens: 100,
        service_tier: Some("priority".into()),
        provided_cost_usd: Some("0.004250000001".parse().unwrap()),
        latency_ms: Some(1234),
        status: "ok".into(),
        response_id: Some("chatcmpl-1".into()),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
    }
}

pub fn minimal_usage_event() -> UsageEvent {
    serde_json::from_str(
        r#"{"event_id":"e1","event_time":"2026-11-01T12:00:00Z","tenant_id":"acme",
            "provider":"openai","request_model":"gpt-4o"}"#,
    )
    .unwrap()
}

pub fn full_spend_update() -> SpendUpdate {
    SpendUpdate {
        scope: AttributionKey {
            attribution: Attribution {
                tenant_id: "acme".into(),
                team: Some("search".into()),
                project: Some("ranker".into()),
                user_id: Some("u-1".into()),
                api_key_id: Some("key-1".into()),
            },
            model: Some("gpt-4o".into()),
        },
        period_start: t("2026-11-01T12:00:00Z"),
        bucket: "hour".into(),
        source_topic: "llm.usage.v1".into(),
        source_partition: 7,
        cost_usd: "12.345678901234".parse().unwrap(),
        input_tokens: 10_000,
        output_tokens: 2_000,
        total_tokens: 12_000,
        request_count: 17,
        last_offset: 123_456,
        max_event_time: t("2026-11-01T12:59:59.999999Z"),
        updated_at: t("2026-11-01T13:00:01Z"),
    }
}

/// A lease request with every field set (two returns).
pub fn full_lease_request() -> LeaseRequest {
    LeaseRequest {
        request_id: "0190f0c4-aaaa-7bbb-8ccc-000000000001".into(),
        instance_id: "router-1".into(),
        budget: "day:tenant_id=acme".into(),
        wanted_usd: "0.5".parse().unwrap(),
        least_usd: "0.025".parse().unwrap(),
        returns: vec![
            LeaseReturn { lease_id: "l1".into(), used_usd: "0.475".parse().unwrap(), done: true },
            LeaseReturn { lease_id: "l2".into(), used_usd: "0.000000000001".parse().unwrap(), done: false },
        ],
        sent_at: t("2026-11-16T00:00:00.000123Z"),
    }
}

/// A lease grant with every field set.
pub fn full_lease_grant() -> LeaseGrant {
    LeaseGrant {
        request_id: "0190f0c4-aaaa-7bbb-8ccc-000000000001".into(),
        instance_id: "router-1".into(),
        budget: "day:tenant_id=acme".into(),
        status: LeaseStatus::Granted,
        lease_id: "0190f0c4-aaaa-7bbb-8ccc-000000000001".into(),
        amount_usd: "0.5".parse().unwrap(),
        granted_at: t("2026-11-16T00:00:00Z"),
        expires_at: t("2026-11-16T00:00:10Z"),
        call_timeout_ms: 30_000,
        retry_after_ms: 0,
        reason: "granted".into(),
    }
}

pub fn full_budget_signal() -> BudgetSignal {
    BudgetSignal {
        scope: "tenant=acme,team=search".into(),
        scope_fields: BTreeMap::from([("tenant_id".into(), "acme".into()), ("team".into(), "search".into())]),
        period: BudgetPeriod::Month,
        period_start: t("2026-11-01T00:00:00Z"),
        period_end: t("2026-12-01T00:00:00Z"),
        state: BudgetState::Reroute,
        action: "reroute gpt-4o -> gpt-4o-mini".into(),
        spend_usd: "950.5".parse().unwrap(),
        limit_usd: Some(Money::from_usd(1000)),
        remaining_usd: Some("49.5".parse().unwrap()),
        spent_tokens: 123_456_789,
        limit_tokens: Some(200_000_000),
        burn_rate_usd_per_hour: "12.25".parse().unwrap(),
        projected_exhaustion: Some(t("2026-11-20T04:00:00Z")),
        throttle_fraction_ppm: Some(250_000),
        throttle_rate_per_sec: Some(5),
        retry_after_ms: Some(30_000),
        reroute: BTreeMap::from([("gpt-4o".into(), "gpt-4o-mini".into())]),
        valid_until: t("2026-11-16T00:05:00Z"),
        reason: "95% of the monthly budget spent".into(),
        sequence: 42,
        emitted_at: t("2026-11-16T00:00:00Z"),
        enforcement: Enforcement::Lease,
    }
}

// ----------------------------------------------------------------- reference Value mapping

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(x) => Value::Union(1, Box::new(f(x))),
    }
}

fn ts(t: &DateTime<Utc>) -> Value {
    Value::TimestampMicros(t.timestamp_micros())
}

fn map(m: &BTreeMap<String, String>) -> Value {
    Value::Map(m.iter().map(|(k, v)| (k.clone(), s(v))).collect::<HashMap<_, _>>())
}

fn money_v(m: Money) -> Value {
    Value::String(m.to_string())
}

fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

pub fn usage_to_value(e: &UsageEvent) -> Value {
    record(vec![
        ("event_id", s(&e.event_id)),
        ("event_time", ts(&e.event_time)),
        ("tenant_id", s(&e.attribution.tenant_id)),
        ("team", opt(e.attribution.team.as_deref(), s)),
        ("project", opt(e.attribution.project.as_deref(), s)),
        ("user_id", opt(e.attribution.user_id.as_deref(), s)),
        ("api_key_id", opt(e.attribution.api_key_id.as_deref(), s)),
        ("feature", opt(e.feature.as_deref(), s)),
        ("environment", opt(e.environment.as_deref(), s)),
        ("tags", map(&e.tags)),
        ("provider", s(&e.provider)),
        ("operation", s(&e.operation)),
        ("request_model", s(&e.request_model)),
        ("response_model", opt(e.response_model.as_deref(), s)),
        ("routed_from_model", opt(e.routed_from_model.as_deref(), s)),
        ("input_tokens", Value::Long(e.input_tokens)),
        ("cache_read_input_tokens", Value::Long(e.cache_read_input_tokens)),
        ("cache_creation_input_tokens", Value::Long(e.cache_creation_input_tokens)),
        ("cache_creation_1h_input_tokens", Value::Long(e.cache_creation_1h_input_tokens)),
        ("output_tokens", Value::Long(e.output_tokens)),
        ("reasoning_output_tokens", Value::Long(e.reasoning_output_tokens)),
        ("service_tier", opt(e.service_tier.as_deref(), s)),
        ("provided_cost_usd", opt(e.provided_cost_usd, money_v)),
        ("latency_ms", opt(e.latency_ms, Value::Long)),
        ("status", s(&e.status)),
        ("response_id", opt(e.response_id.as_deref(), s)),
        ("trace_id", opt(e.trace_id.as_deref(), s)),
    ])
}

pub fn spend_to_value(u: &SpendUpdate) -> Value {
    record(vec![
        ("tenant_id", s(&u.scope.attribution.tenant_id)),
        ("team", opt(u.scope.attribution.team.as_deref(), s)),
        ("project", opt(u.scope.attribution.project.as_deref(), s)),
        ("user_id", opt(u.scope.attribution.user_id.as_deref(), s)),
        ("api_key_id", opt(u.scope.attribution.api_key_id.as_deref(), s)),
        ("model", opt(u.scope.model.as_deref(), s)),
        ("period_start", ts(&u.period_start)),
        ("bucket", s(&u.bucket)),
        ("source_topic", s(&u.source_topic)),
        ("source_partition", Value::Int(u.source_partition)),
        ("cost_usd", money_v(u.cost_usd)),
        ("input_tokens", Value::Long(u.input_tokens)),
        ("output_tokens", Value::Long(u.output_tokens)),
        ("total_tokens", Value::Long(u.total_tokens)),
        ("request_count", Value::Long(u.request_count)),
        ("last_offset", Value::Long(u.last_offset)),
        ("max_event_time", ts(&u.max_event_time)),
        ("updated_at", ts(&u.updated_at)),
    ])
}

pub fn signal_to_value(g: &BudgetSignal) -> Value {
    let state_index = BudgetState::ALL.iter().position(|x| *x == g.state).unwrap() as u32;
    record(vec![
        ("scope", s(&g.scope)),
        ("scope_fields", map(&g.scope_fields)),
        ("period", s(g.period.as_str())),
        ("period_start", ts(&g.period_start)),
        ("period_end", ts(&g.period_end)),
        ("state", Value::Enum(state_index, g.state.as_str().to_owned())),
        ("action", s(&g.action)),
        ("spend_usd", money_v(g.spend_usd)),
        ("limit_usd", opt(g.limit_usd, money_v)),
        ("remaining_usd", opt(g.remaining_usd, money_v)),
        ("spent_tokens", Value::Long(g.spent_tokens)),
        ("limit_tokens", opt(g.limit_tokens, Value::Long)),
        ("burn_rate_usd_per_hour", money_v(g.burn_rate_usd_per_hour)),
        ("projected_exhaustion", opt(g.projected_exhaustion.as_ref(), ts)),
        ("throttle_fraction_ppm", opt(g.throttle_fraction_ppm, |p| Value::Int(p as i32))),
        ("throttle_rate_per_sec", opt(g.throttle_rate_per_sec, |p| Value::Int(p as i32))),
        ("retry_after_ms", opt(g.retry_after_ms, Value::Long)),
        ("reroute", map(&g.reroute)),
        ("valid_until", ts(&g.valid_until)),
        ("reason", s(&g.reason)),
        ("sequence", Value::Long(g.sequence)),
        ("emitted_at", ts(&g.emitted_at)),
        ("enforcement", s(g.enforcement.as_str())),
    ])
}

/// Field accessor over a decoded `Value::Record`.
pub struct Fields(HashMap<String, Value>);

impl Fields {
    pub fn new(v: Value) -> Fields {
        match v {
            Value::Record(fields) => Fields(fields.into_iter().collect()),
            other => panic!("not a record: {other:?}"),
        }
    }
    fn take(&mut self, name: &str) -> Value {
        self.0.remove(name).unwrap_or_else(|| panic!("field {name} missing"))
    }
    pub fn s(&mut self, name: &str) -> String {
        match self.take(name) {
            Value::String(x) => x,
            other => panic!("{name}: not a string: {other:?}"),
        }
    }
    pub fn long(&mut self, name: &str) -> i64 {
        match self.take(name) {
            Value::Long(x) => x,
            other => panic!("{name}: not a long: {other:?}"),
        }
    }
    pub fn int(&mut self, name: &str) -> i32 {
        match self.take(name) {
            Value::Int(x) => x,
            other => panic!("{name}: not an int: {other:?}"),
        }
    }
    pub fn ts(&mut self, name: &str) -> DateTime<Utc> {
        match self.take(name) {
            Value::TimestampMicros(x) => DateTime::<Utc>::from_timestamp_micros(x).unwrap(),
            other => panic!("{name}: not a timestamp-micros: {other:?}"),
        }
    }
    pub fn money(&mut self, name: &str) -> Money {
        self.s(name).parse().unwrap()
    }
    pub fn map(&mut self, name: &str) -> BTreeMap<String, String> {
        match self.take(name) {
            Value::Map(m) => m
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(v) => (k, v),
                    other => panic!("{name}: map value not a string: {other:?}"),
                })
                .collect(),
            other => panic!("{name}: not a map: {other:?}"),
        }
    }
    fn opt_value(&mut self, name: &str) -> Option<Value> {
        match self.take(name) {
            Value::Union(0, inner) if *inner == Value::Null => None,
            Value::Union(1, inner) => Some(*inner),
            other => panic!("{name}: not a [null, T] union: {other:?}"),
        }
    }
    pub fn opt_s(&mut self, name: &str) -> Option<String> {
        self.opt_value(name).map(|v| match v {
            Value::String(x) => x,
            other => panic!("{name}: not a string: {other:?}"),
        })
    }
    pub fn opt_long(&mut self, name: &str) -> Option<i64> {
        self.opt_value(name).map(|v| match v {
            Value::Long(x) => x,
            other => panic!("{name}: not a long: {other:?}"),
        })
    }
    pub fn opt_int(&mut self, name: &str) -> Option<i32> {
        self.opt_value(name).map(|v| match v {
            Value::Int(x) => x,
            other => panic!("{name}: not an int: {other:?}"),
        })
    }
    pub fn opt_ts(&mut self, name: &str) -> Option<DateTime<Utc>> {
        self.opt_value(name).map(|v| match v {
            Value::TimestampMicros(x) => DateTime::<Utc>::from_timestamp_micros(x).unwrap(),
            other => panic!("{name}: not a timestamp-micros: {other:?}"),
        })
    }
    pub fn opt_money(&mut self, name: &str) -> Option<Money> {
        self.opt_s(name).map(|x| x.parse().unwrap())
    }
    pub fn state(&mut self, name: &str) -> BudgetState {
        match self.take(name) {
            Value::Enum(i, sym) => {
                let st = BudgetState::parse(&sym).unwrap();
                assert_eq!(BudgetState::ALL[i as usize], st);
                st
            }
            other => panic!("{name}: not an enum: {other:?}"),
        }
    }
    pub fn done(self) {
        assert!(self.0.is_empty(), "unmapped fields: {:?}", self.0.keys().collect::<Vec<_>>());
    }
}

pub fn usage_from_value(v: Value) -> UsageEvent {
    let mut f = Fields::new(v);
    let e = UsageEvent {
        event_id: f.s("event_id"),
        event_time: f.ts("event_time"),
        attribution: Attribution {
            tenant_id: f.s("tenant_id"),
            team: f.opt_s("team"),
            project: f.opt_s("project"),
            user_id: f.opt_s("user_id"),
            api_key_id: f.opt_s("api_key_id"),
        },
        feature: f.opt_s("feature"),
        environment: f.opt_s("environment"),
        tags: f.map("tags"),
        provider: f.s("provider"),
        operation: f.s("operation"),
        request_model: f.s("request_model"),
        response_model: f.opt_s("response_model"),
        routed_from_model: f.opt_s("routed_from_model"),
        input_tokens: f.long("input_tokens"),
        cache_read_input_tokens: f.long("cache_read_input_tokens"),
        cache_creation_input_tokens: f.long("cache_creation_input_tokens"),
        cache_creation_1h_input_tokens: f.long("cache_creation_1h_input_tokens"),
        output_tokens: f.long("output_tokens"),
        reasoning_output_tokens: f.long("reasoning_output_tokens"),
        service_tier: f.opt_s("service_tier"),
        provided_cost_usd: f.opt_money("provided_cost_usd"),
        latency_ms: f.opt_long("latency_ms"),
        status: f.s("status"),
        response_id: f.opt_s("response_id"),
        trace_id: f.opt_s("trace_id"),
    };
    f.done();
    e
}

pub fn spend_from_value(v: Value) -> SpendUpdate {
    let mut f = Fields::new(v);
    let u = SpendUpdate {
        scope: AttributionKey {
            attribution: Attribution {
                tenant_id: f.s("tenant_id"),
                team: f.opt_s("team"),
                project: f.opt_s("project"),
                user_id: f.opt_s("user_id"),
                api_key_id: f.opt_s("api_key_id"),
            },
            model: f.opt_s("model"),
        },
        period_start: f.ts("period_start"),
        bucket: f.s("bucket"),
        source_topic: f.s("source_topic"),
        source_partition: f.int("source_partition"),
        cost_usd: f.money("cost_usd"),
        input_tokens: f.long("input_tokens"),
        output_tokens: f.long("output_tokens"),
        total_tokens: f.long("total_tokens"),
        request_count: f.long("request_count"),
        last_offset: f.long("last_offset"),
        max_event_time: f.ts("max_event_time"),
        updated_at: f.ts("updated_at"),
    };
    f.done();
    u
}

pub fn signal_from_value(v: Value) -> BudgetSignal {
    let mut f = Fields::new(v);
    let g = BudgetSignal {
        scope: f.s("scope"),
        scope_fields: f.map("scope_fields"),
        period: BudgetPeriod::parse(&f.s("period")).unwrap(),
        period_start: f.ts("period_start"),
        period_end: f.ts("period_end"),
        state: f.state("state"),
        action: f.s("action"),
        spend_usd: f.money("spend_usd"),
        limit_usd: f.opt_money("limit_usd"),
        remaining_usd: f.opt_money("remaining_usd"),
        spent_tokens: f.long("spent_tokens"),
        limit_tokens: f.opt_long("limit_tokens"),
        burn_rate_usd_per_hour: f.money("burn_rate_usd_per_hour"),
        projected_exhaustion: f.opt_ts("projected_exhaustion"),
        throttle_fraction_ppm: f.opt_int("throttle_fraction_ppm").map(|p| u32::try_from(p).unwrap()),
        throttle_rate_per_sec: f.opt_int("throttle_rate_per_sec").map(|p| u32::try_from(p).unwrap()),
        retry_after_ms: f.opt_long("retry_after_ms"),
        reroute: f.map("reroute"),
        valid_until: f.ts("valid_until"),
        reason: f.s("reason"),
        sequence: f.long("sequence"),
        emitted_at: f.ts("emitted_at"),
        enforcement: Enforcement::parse(&f.s("enforcement")).unwrap(),
    };
    f.done();
    g
}
