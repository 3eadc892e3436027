//! Budget policy and enforcement, pure: the budgets file ([`policy`]), calendar periods in a
//! time zone ([`period`]), budget scopes and signal keys ([`scope`]) and the enforcement
//! [`engine`] that turns cumulative spend into [`BudgetSignal`](crate::signal::BudgetSignal)s, and
//! the [`lease`] book of budgets enforced by quota leases.

pub mod engine;
pub mod lease;
pub mod period;
pub mod policy;
pub mod scope;

pub use engine::{BudgetEngine, BudgetView};
pub use lease::{BudgetFacts, LeaseBook, LeaseRules, Outstanding};
pub use period::{next_period, period_of, PeriodWindow};
pub use policy::{Budget, BudgetPolicy, Percent, PolicyError, PolicyProblem, Threshold, ThresholdAction};
pub use scope::{signal_key, BudgetScope};
