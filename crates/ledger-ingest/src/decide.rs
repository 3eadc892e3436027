//! `POST /v1/decide`: the router as a service for any language (`ledger router serve`,
//! docs/router.md). The same process serves `POST /v1/usage`: a usage event that echoes the
//! `decision_id` of its decision corrects the call's lease reservation to its actual cost.
//!
//! The tenant comes from the API key, as for ingest; the body names the rest of the call's
//! attribution, the model and the expected size. The answer is the decision of
//! [`ledger_router::Router::decide_call`], always with HTTP 200 (a refusal is a decision, not
//! an error).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ledger_core::histogram::{Buckets, Histogram, SumUnit};
use ledger_core::{Money, UsageEvent};
use ledger_router::lease::ESTIMATE_ERROR_BUCKETS_USD;
use ledger_router::{CallContext, CallSize, Decision, Reservation, Router};
use serde::{Deserialize, Serialize};

/// Decisions whose reservation waits this long at most for its usage report; after it, the
/// router has returned the lease with the estimate (its call timeout) and a report changes
/// nothing.
pub const DECISION_TTL: Duration = Duration::from_secs(120);

/// Longest string accepted in a decide request (as for usage events).
const MAX_STRING_CHARS: usize = 1024;

/// The router behind `POST /v1/decide`, and the reservations waiting for their usage.
#[derive(Debug)]
pub struct Sidecar {
    router: Router,
    pending: Mutex<HashMap<Box<str>, (Reservation, Instant)>>,
    next_id: AtomicU64,
    /// `[allow, reroute, throttle, block]`.
    decisions: [AtomicU64; 4],
    reported: AtomicU64,
    unknown_reports: AtomicU64,
    /// Microseconds from the handler's start (headers and body read) to its answer.
    handling: Histogram<{ HANDLING_MICROS.len() }>,
}

/// Buckets of `ledger_router_decide_seconds` (microseconds).
const HANDLING_MICROS: Buckets<12> = [
    (10, "0.00001"),
    (25, "0.000025"),
    (50, "0.00005"),
    (100, "0.0001"),
    (250, "0.00025"),
    (500, "0.0005"),
    (1_000, "0.001"),
    (2_500, "0.0025"),
    (5_000, "0.005"),
    (10_000, "0.01"),
    (100_000, "0.1"),
    (1_000_000, "1"),
];

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideRequest {
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    api_key_id: Option<String>,
    /// Accepted for the caller's convenience (it goes on the usage event); budgets do not
    /// scope by feature.
    #[serde(default)]
    #[allow(dead_code)]
    feature: Option<String>,
    model: String,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    max_tokens: Option<u64>,
}

/// The answer.
#[derive(Debug, Serialize)]
struct DecideAnswer<'a> {
    decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requested_model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimated_cost_usd: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

impl Sidecar {
    /// The sidecar over a started router.
    pub fn new(router: Router) -> Sidecar {
        Sidecar {
            router,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            decisions: Default::default(),
            reported: AtomicU64::new(0),
            unknown_reports: AtomicU64::new(0),
            handling: Histogram::default(),
        }
    }

    /// The router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Answers one decide request of `tenant` (the API key's): `Err` is a 400 or 403 message.
    pub(crate) fn decide(&self, tenant: &str, body: &Bytes) -> Result<Response, (StatusCode, &'static str, String)> {
        let req: DecideRequest = serde_json::from_slice(body).map_err(|e| {
            (StatusCode::BAD_REQUEST, "invalid_body", format!("not a decide request ({e}); see /openapi.yaml, DecideRequest"))
        })?;
        if req.tenant_id.as_deref().is_some_and(|t| t != tenant) {
            return Err((StatusCode::FORBIDDEN, "forbidden_tenant", format!("this API key decides for tenant {tenant:?} only")));
        }
        let strings = [Some(&req.model), req.team.as_ref(), req.project.as_ref(), req.user_id.as_ref(), req.api_key_id.as_ref()];
        if req.model.trim().is_empty() || strings.iter().flatten().any(|s| s.chars().count() > MAX_STRING_CHARS) {
            return Err((
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("`model` must be a non-empty string, and strings at most {MAX_STRING_CHARS} characters"),
            ));
        }
        let ctx = CallContext {
            tenant_id: tenant,
            team: req.team.as_deref(),
            project: req.project.as_deref(),
            user_id: req.user_id.as_deref(),
            api_key_id: req.api_key_id.as_deref(),
        };
        let size = CallSize {
            input_tokens: req.input_tokens,
            max_tokens: req.max_tokens,
            provider: req.provider.as_deref().unwrap_or(""),
        };
        let call = self.router.decide_call(&ctx, &req.model, &size);
        let kind = match &call.decision {
            Decision::Allow => 0,
            Decision::Reroute { .. } => 1,
            Decision::Throttle { .. } => 2,
            Decision::Block { .. } => 3,
        };
        self.decisions[kind].fetch_add(1, Ordering::Relaxed);
        let mut answer = DecideAnswer {
            decision: ["allow", "reroute", "throttle", "block"][kind],
            model: call.decision.model_to_call(&req.model),
            requested_model: None,
            decision_id: None,
            estimated_cost_usd: None,
            retry_after_ms: None,
            scope: None,
            reason: None,
        };
        match &call.decision {
            Decision::Allow => {}
            Decision::Reroute { from, scope, .. } => (answer.requested_model, answer.scope) = (Some(&**from), Some(&**scope)),
            Decision::Throttle { retry_after, scope } => {
                answer.retry_after_ms = Some(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX).max(1));
                answer.scope = Some(&**scope);
            }
            Decision::Block { reason, scope } => (answer.reason, answer.scope) = (Some(&**reason), Some(&**scope)),
        }
        if call.decision.is_allowed() {
            let id = format!("{}-{:x}", self.router.instance_id(), self.next_id.fetch_add(1, Ordering::Relaxed));
            if let Some(reservation) = call.reservation {
                answer.estimated_cost_usd = Some(reservation.estimate());
                self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone().into(), (reservation, Instant::now()));
            }
            answer.decision_id = Some(id);
        }
        Ok((StatusCode::OK, Json(answer)).into_response())
    }

    /// A usage event echoing `decision_id` was written: the reservation becomes its actual
    /// cost. An unknown or expired id changes nothing.
    pub(crate) fn report(&self, decision_id: &str, event: &UsageEvent) {
        let found = self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(decision_id);
        match found {
            Some((reservation, _)) => {
                self.reported.fetch_add(1, Ordering::Relaxed);
                self.router.complete_event(reservation, event);
            }
            None => {
                self.unknown_reports.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records how long one decide request took to answer, from `started`.
    pub(crate) fn observe_handling(&self, started: Instant) {
        self.handling.observe(&HANDLING_MICROS, u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
    }

    /// Forgets reservations older than [`DECISION_TTL`] (their estimates stay what was used).
    pub fn sweep(&self) -> usize {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let before = pending.len();
        pending.retain(|_, (_, at)| at.elapsed() < DECISION_TTL);
        before - pending.len()
    }

    /// The router's counters in the Prometheus text format.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let name = "ledger_router_decisions_total";
        let _ = writeln!(out, "# HELP {name} Answers of POST /v1/decide, by decision.\n# TYPE {name} counter");
        for (i, kind) in ["allow", "reroute", "throttle", "block"].iter().enumerate() {
            let _ = writeln!(out, "{name}{{decision=\"{kind}\"}} {}", self.decisions[i].load(Ordering::Relaxed));
        }
        let s = self.router.lease_stats();
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner()).len();
        for (name, kind, help, v) in [
            ("ledger_router_lease_reservations_total", "counter", "Calls admitted under a lease.", s.reserved),
            (
                "ledger_router_lease_refused_empty_total",
                "counter",
                "Calls refused while no allowance covered them.",
                s.refused_empty,
            ),
            ("ledger_router_lease_refused_exhausted_total", "counter", "Calls refused: budget exhausted.", s.refused_exhausted),
            (
                "ledger_router_lease_refused_other_total",
                "counter",
                "Calls refused: no estimate, or no enforcer (fail closed).",
                s.refused_other,
            ),
            ("ledger_router_unleased_calls_total", "counter", "Calls of lease budgets allowed without a lease.", s.unleased),
            ("ledger_router_lease_requests_total", "counter", "Lease requests sent.", s.requests_sent),
            ("ledger_router_lease_grants_total", "counter", "Lease answers received.", s.grants_received),
            ("ledger_router_lease_timeouts_total", "counter", "Lease requests unanswered within the grant timeout.", s.timeouts),
            (
                "ledger_router_usage_reports_total",
                "counter",
                "Usage events that completed a reservation.",
                self.reported.load(Ordering::Relaxed),
            ),
            (
                "ledger_router_usage_reports_unknown_total",
                "counter",
                "Usage events echoing an unknown or expired decision_id.",
                self.unknown_reports.load(Ordering::Relaxed),
            ),
            ("ledger_router_reservations_pending", "gauge", "Reservations waiting for their usage report.", pending as u64),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        let name = "ledger_router_estimate_error_usd";
        let _ = writeln!(
            out,
            "# HELP {name} Estimated minus actual cost per reported call (negative: the call cost more).\n# TYPE {name} histogram"
        );
        let h = &s.estimate_error;
        let mut cumulative = 0;
        for (i, le) in ESTIMATE_ERROR_BUCKETS_USD.iter().enumerate() {
            cumulative += h.buckets[i];
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", h.sum, h.count);
        let help = "Time to answer POST /v1/decide inside the sidecar: authentication, parsing, the decision, the answer.";
        self.handling.render(&mut out, &HANDLING_MICROS, "ledger_router_decide_seconds", help, SumUnit::Micros);
        out
    }
}
