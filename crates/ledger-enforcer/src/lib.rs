//! The budget enforcer: consumes cumulative spend from `llm.spend.v1`, evaluates the budget
//! policy of `ledger-core` ([`ledger_core::budget`]) and publishes one
//! [`ledger_core::signal::BudgetSignal`] per change of a scope's state on the compacted topic
//! `llm.budget-signals.v1`; for budgets with `enforcement = "lease"` it also answers the routers'
//! quota-lease requests ([`leases`]). See [`runner`] for the restart and single-writer rules.

pub mod config;
mod coverage;
pub mod error;
pub mod leases;
pub mod runner;
pub mod signals;
pub mod stats;
pub mod status;

pub use error::EnforcerError;
pub use runner::{load_policy, Enforcer, EnforcerConfig};
pub use stats::Stats;
