//! The ledger as a provider's usage report sees it: per UTC day and model name (the model that
//! served the call, else the one requested), requests, tokens and exact cost per token class.

use chrono::{DateTime, Utc};
use ledger_core::{Money, TokenClass};
use serde::Deserialize;

use crate::charge_lines::class_sql;
use crate::config::validate_database_name;
use crate::error::{Error, Result};
use crate::row::datetime_secs;

/// One (day, model) of one provider in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayModelUsage {
    /// Midnight (UTC) of the day.
    pub day: DateTime<Utc>,
    /// `response_model`, else `request_model`: the name a provider's report uses.
    pub model: String,
    /// Ledger rows (calls).
    pub requests: u64,
    /// Tokens per class, indexed by [`TokenClass::index`].
    pub tokens: [u64; 6],
    /// Exact cost per class, indexed by [`TokenClass::index`].
    pub cost: [Money; 6],
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Raw {
    day: u32,
    served_model: String,
    requests: u64,
    t0: u64,
    t1: u64,
    t2: u64,
    t3: u64,
    t4: u64,
    t5: u64,
    c0: i128,
    c1: i128,
    c2: i128,
    c3: i128,
    c4: i128,
    c5: i128,
}

/// The ledger rows of `provider` with event time in `[from, to)`, per day and model name.
pub async fn usage_by_day_and_model(
    client: &clickhouse::Client,
    database: &str,
    provider: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<DayModelUsage>> {
    validate_database_name(database)?;
    // RowBinary is read by position: the columns in `Raw`'s field order (every t, then every c).
    let (mut token_sums, mut cost_sums) = (Vec::new(), Vec::new());
    for class in TokenClass::ALL {
        let (tokens, cost) = class_sql(class);
        let i = class.index();
        token_sums.push(format!("sum({tokens}) AS t{i}"));
        cost_sums.push(format!("sum({cost}) AS c{i}"));
    }
    let sums = [token_sums, cost_sums].concat();
    let sql = format!(
        "SELECT toUInt32(toStartOfDay(event_time)) AS day, if(response_model != '', response_model, request_model) AS \
         served_model, count() AS requests, {} FROM {database}.usage_ledger \
         WHERE provider = ? AND event_time >= toDateTime(?, 'UTC') AND event_time < toDateTime(?, 'UTC') \
         GROUP BY day, served_model ORDER BY day, served_model",
        sums.join(", ")
    );
    let rows = client
        .query(&sql)
        .bind(provider)
        .bind(datetime_secs(from, "from")?)
        .bind(datetime_secs(to, "to")?)
        .fetch_all::<Raw>()
        .await
        .map_err(|e| Error::clickhouse(format!("usage of provider {provider} in {database}.usage_ledger"), e))?;
    Ok(rows
        .into_iter()
        .map(|r| DayModelUsage {
            day: DateTime::from_timestamp(i64::from(r.day), 0).unwrap_or_default(),
            model: r.served_model,
            requests: r.requests,
            tokens: [r.t0, r.t1, r.t2, r.t3, r.t4, r.t5],
            cost: [r.c0, r.c1, r.c2, r.c3, r.c4, r.c5].map(Money::from_picos),
        })
        .collect())
}
