//! The datum mapping of the quota-lease records (`lease_request.avsc`, `lease_grant.avsc`):
//! few messages per second, so plain serde wire structs, converted to and from the
//! `ledger-core` types as in [`crate::records`].

use std::sync::OnceLock;

use ledger_core::lease::{LeaseGrant, LeaseRequest, LeaseReturn, LeaseStatus};
use ledger_core::Money;
use serde::{Deserialize, Serialize};

use crate::error::SchemaError;
use crate::records::{micros, money, money_out, read, time, write};
use crate::schema::{AvroRecord, RecordSchema};

const LEASE_REQUEST: &str = "LeaseRequest";
const LEASE_GRANT: &str = "LeaseGrant";

#[derive(Serialize, Deserialize)]
struct ReturnWire {
    lease_id: String,
    used_usd: String,
    done: bool,
}

#[derive(Serialize, Deserialize)]
struct RequestWire {
    request_id: String,
    instance_id: String,
    budget: String,
    wanted_usd: String,
    least_usd: String,
    returns: Vec<ReturnWire>,
    sent_at: i64,
}

fn money_text(record: &'static str, field: &'static str, m: Money) -> Result<String, SchemaError> {
    Ok(money_out(record, field, m)?.to_string())
}

impl AvroRecord for LeaseRequest {
    const NAME: &'static str = LEASE_REQUEST;
    const AVSC: &'static str = include_str!("../../../schemas/avro/lease_request.avsc");
    const HISTORY: &'static [&'static str] = &[include_str!("../../../schemas/avro/history/lease_request/v1.avsc")];

    fn schema_cell() -> &'static OnceLock<RecordSchema> {
        static CELL: OnceLock<RecordSchema> = OnceLock::new();
        &CELL
    }

    fn write_datum(&self, schema: &serde_avro_fast::Schema, out: &mut Vec<u8>) -> Result<(), SchemaError> {
        const R: &str = LEASE_REQUEST;
        let returns = self
            .returns
            .iter()
            .map(|r| {
                Ok(ReturnWire {
                    lease_id: r.lease_id.clone(),
                    used_usd: money_text(R, "returns.used_usd", r.used_usd)?,
                    done: r.done,
                })
            })
            .collect::<Result<Vec<_>, SchemaError>>()?;
        let wire = RequestWire {
            request_id: self.request_id.clone(),
            instance_id: self.instance_id.clone(),
            budget: self.budget.clone(),
            wanted_usd: money_text(R, "wanted_usd", self.wanted_usd)?,
            least_usd: money_text(R, "least_usd", self.least_usd)?,
            returns,
            sent_at: micros(&self.sent_at),
        };
        write(R, schema, &wire, out)
    }

    fn read_datum(schema: &serde_avro_fast::Schema, datum: &[u8]) -> Result<Self, SchemaError> {
        const R: &str = LEASE_REQUEST;
        let w: RequestWire = read(R, schema, datum)?;
        let returns = w
            .returns
            .into_iter()
            .map(|r| Ok(LeaseReturn { used_usd: money(R, "returns.used_usd", &r.used_usd)?, lease_id: r.lease_id, done: r.done }))
            .collect::<Result<Vec<_>, SchemaError>>()?;
        Ok(LeaseRequest {
            request_id: w.request_id,
            instance_id: w.instance_id,
            budget: w.budget,
            wanted_usd: money(R, "wanted_usd", &w.wanted_usd)?,
            least_usd: money(R, "least_usd", &w.least_usd)?,
            returns,
            sent_at: time(R, "sent_at", w.sent_at)?,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct GrantWire {
    request_id: String,
    instance_id: String,
    budget: String,
    status: LeaseStatus,
    lease_id: String,
    amount_usd: String,
    granted_at: i64,
    expires_at: i64,
    call_timeout_ms: i64,
    retry_after_ms: i64,
    reason: String,
}

impl AvroRecord for LeaseGrant {
    const NAME: &'static str = LEASE_GRANT;
    const AVSC: &'static str = include_str!("../../../schemas/avro/lease_grant.avsc");
    const HISTORY: &'static [&'static str] = &[include_str!("../../../schemas/avro/history/lease_grant/v1.avsc")];

    fn schema_cell() -> &'static OnceLock<RecordSchema> {
        static CELL: OnceLock<RecordSchema> = OnceLock::new();
        &CELL
    }

    fn write_datum(&self, schema: &serde_avro_fast::Schema, out: &mut Vec<u8>) -> Result<(), SchemaError> {
        let wire = GrantWire {
            request_id: self.request_id.clone(),
            instance_id: self.instance_id.clone(),
            budget: self.budget.clone(),
            status: self.status,
            lease_id: self.lease_id.clone(),
            amount_usd: money_text(LEASE_GRANT, "amount_usd", self.amount_usd)?,
            granted_at: micros(&self.granted_at),
            expires_at: micros(&self.expires_at),
            call_timeout_ms: self.call_timeout_ms,
            retry_after_ms: self.retry_after_ms,
            reason: self.reason.clone(),
        };
        write(LEASE_GRANT, schema, &wire, out)
    }

    fn read_datum(schema: &serde_avro_fast::Schema, datum: &[u8]) -> Result<Self, SchemaError> {
        const R: &str = LEASE_GRANT;
        let w: GrantWire = read(R, schema, datum)?;
        Ok(LeaseGrant {
            amount_usd: money(R, "amount_usd", &w.amount_usd)?,
            granted_at: time(R, "granted_at", w.granted_at)?,
            expires_at: time(R, "expires_at", w.expires_at)?,
            request_id: w.request_id,
            instance_id: w.instance_id,
            budget: w.budget,
            status: w.status,
            lease_id: w.lease_id,
            call_timeout_ms: w.call_timeout_ms,
            retry_after_ms: w.retry_after_ms,
            reason: w.reason,
        })
    }
}
