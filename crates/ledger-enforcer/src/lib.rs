//! The budget enforcer: consumes cumulative spend from `llm.spend.v1`, evaluates the budget
//! policy of `ledger-core` and publishes one [`ledger_core::signal::BudgetSignal`] per change of a
//! scope's state on the compacted topic `llm.budget-signals.v1`.

pub mod config;
