-- 0001: the ledger. One row per accepted, priced usage event.
--
-- Portable DDL: runs unchanged on ClickHouse 18.16 and on current releases (no DateTime64, Map,
-- TTL, CODEC, LowCardinality, skip indices). `{database}` is replaced by the configured database.
-- Statements are separated by `;` at the end of a line and must be idempotent (IF NOT EXISTS):
-- a migration interrupted half way is simply run again.
--
-- Types:
--   * money: Decimal(38, 12) = exact pico-dollars; its RowBinary form is the little-endian i128 of
--     ledger_core::Money. Every cost term of PRICING.md has its own column; cost_usd is their sum.
--   * optional text (team, project, ...): String, '' = absent (no Nullable(String) overhead).
--   * times: DateTime('UTC') (seconds), so toYYYYMM / toStartOfDay bucket in UTC whatever the
--     server time zone; event_time_micros keeps the sub-second part of event_time (0..999999).
--   * tags: parallel arrays tag_keys[i] = tag_values[i], sorted by key.
--
-- PARTITION BY toYYYYMM(ingest_time): the writer stamps every row of a batch with one
-- ingest_time, so one INSERT lands in exactly one partition, as one part, atomically (the
-- exactly-once fence of ARCHITECTURE.md reads max(kafka_offset) per Kafka partition).
-- ORDER BY (tenant_id, event_time, event_id): nearly every analytic and chargeback query filters on
-- one tenant and a time range, which this key turns into a narrow primary-key range; event_id last
-- makes the audit lookup "this event of this tenant" a point query and groups resends together.
CREATE TABLE IF NOT EXISTS {database}.usage_ledger
(
    event_id String,
    event_time DateTime('UTC'),
    event_time_micros UInt32,
    ingest_time DateTime('UTC'),

    tenant_id String,
    team String,
    project String,
    user_id String,
    api_key_id String,
    feature String,
    environment String,
    tag_keys Array(String),
    tag_values Array(String),

    provider String,
    operation String,
    model String,
    request_model String,
    response_model String,
    routed_from_model String,
    service_tier String,
    status String,

    input_tokens UInt64,
    cache_read_input_tokens UInt64,
    cache_creation_input_tokens UInt64,
    cache_creation_1h_input_tokens UInt64,
    output_tokens UInt64,
    reasoning_output_tokens UInt64,

    input_cost_usd Decimal(38, 12),
    cache_read_cost_usd Decimal(38, 12),
    cache_write_cost_usd Decimal(38, 12),
    cache_write_1h_cost_usd Decimal(38, 12),
    output_cost_usd Decimal(38, 12),
    reasoning_cost_usd Decimal(38, 12),
    cost_usd Decimal(38, 12),
    provided_cost_usd Nullable(Decimal(38, 12)),
    routed_from_cost_usd Nullable(Decimal(38, 12)),
    savings_usd Decimal(38, 12),
    price_version String,

    latency_ms Nullable(Int64),
    response_id String,
    trace_id String,

    kafka_topic String,
    kafka_partition Int32,
    kafka_offset Int64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ingest_time)
ORDER BY (tenant_id, event_time, event_id);
