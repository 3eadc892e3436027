use super::*;

pub(crate) const EXAMPLE: &str = r#"
[defaults]
timezone = "UTC"
lookahead_secs = 2
burn_window_secs = 60

[[budget]]
name = "acme-search-monthly"
scope = { tenant_id = "acme", team = "search" }
period = "month"
limit_usd = "1000.00"
[[budget.threshold]]
at_percent = "50"
action = "notify"
[[budget.threshold]]
at_percent = "80"
action = "throttle"
throttle_fraction = "0.25"
retry_after_ms = 1000
[[budget.threshold]]
at_percent = "90"
action = "reroute"
reroute = { "claude-opus-4-1" = "claude-haiku-4-5", "gpt-4o" = "gpt-4o-mini" }
[[budget.threshold]]
at_percent = "100"
action = "block"
"#;

#[test]
fn parses_the_example() {
    let p = BudgetPolicy::parse(EXAMPLE).unwrap();
    assert_eq!(p.budgets.len(), 1);
    let b = &p.budgets[0];
    assert_eq!(b.signal_key(), "month:tenant_id=acme,team=search");
    assert_eq!(b.limit_usd, Some(Money::from_usd(1000)));
    assert_eq!(b.thresholds.len(), 4);
    assert_eq!(
        b.thresholds[1].action,
        ThresholdAction::Throttle { fraction_ppm: Some(250_000), rate_per_sec: None, retry_after_ms: Some(1000) }
    );
    assert_eq!(b.thresholds[3].at_percent, Percent::whole(100));
    assert_eq!((b.lookahead_secs, b.burn_window_secs), (2, 60));
}

#[test]
fn reports_every_problem_at_once() {
    let text = r#"
colour = "blue"
[defaults]
timezone = "Mars/Olympus"
[[budget]]
name = "a"
scope = { tenant_id = "acme", user_id = "u", model = "m" }
period = "fortnight"
limit_usd = 10.5
[[budget.threshold]]
at_percent = "80"
action = "throttle"
throttle_fraction = "1.5"
[[budget.threshold]]
at_percent = "80"
action = "reroute"
reroute = { "gpt-4o" = "gpt-4o" }
[[budget]]
name = "b"
scope = { tenant_id = "acme", colour = "x" }
period = "day"
[[budget.threshold]]
at_percent = "90"
action = "block"
[[budget.threshold]]
at_percent = "95"
action = "notify"
[[budget]]
name = "c"
scope = { tenant_id = "t" }
period = "day"
limit_tokens = 5
[[budget.threshold]]
at_percent = "100"
action = "block"
[[budget]]
name = "e"
scope = { tenant_id = "e" }
period = "day"
limit_tokens = 5
enforcement = "lease"
[[budget.threshold]]
at_percent = "100"
action = "block"
[[budget]]
name = "d"
scope = { tenant_id = "d" }
period = "day"
limit_usd = "1"
enforcement = "hard"
[[budget.threshold]]
at_percent = "100"
action = "block"
[[budget]]
name = "c"
scope = { tenant_id = "t" }
period = "day"
limit_tokens = 5
[[budget.threshold]]
at_percent = "100"
action = "block"
"#;
    let err = BudgetPolicy::parse(text).unwrap_err();
    let msg = err.to_string();
    for needle in [
        "top level, field `colour`: unknown key",
        "[defaults], field `timezone`: \"Mars/Olympus\" is not an IANA time zone",
        "budget \"a\", field `scope`: tenant_id + user_id + model is not a scope",
        "allowed: tenant_id; tenant_id + team;",
        "budget \"a\", field `period`: \"fortnight\" is not a period",
        "budget \"a\", field `limit_usd`: 10.5 is a TOML float",
        "budget \"a\", field `threshold[1].throttle_fraction`: must be above 0 and below 1",
        "budget \"a\", field `threshold[2].at_percent`: 80% is not above threshold[1] (80%)",
        "budget \"a\", field `threshold[2].reroute.\"gpt-4o\"`: reroutes a model to itself",
        "budget \"b\", field `scope.colour`: unknown scope field",
        "budget \"b\", field `limit_usd`: missing limit",
        "budget \"b\", field `threshold[2].action`: notify after block",
        "budget \"c\", field `name`: duplicate name",
        "budget \"e\", field `enforcement`: quota leases cap a USD limit: set limit_usd",
        "budget \"d\", field `enforcement`: \"hard\" is not an enforcement",
        "budget \"c\", field `scope`: same scope and period as budget \"c\" (day:tenant_id=t)",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
}

#[test]
fn syntax_errors_name_the_line() {
    let err = BudgetPolicy::parse("[[budget]\nname = 1").unwrap_err();
    assert!(matches!(err, PolicyError::Syntax(ref s) if s.contains("line 1")), "{err}");
}

#[test]
fn percent_math_is_exact() {
    let p = Percent::whole(80);
    assert!(p.reached_by(80, 100));
    assert!(!p.reached_by(79, 100));
    assert!(!Percent::from_micros(33_333_334).reached_by(1, 3));
    assert!(Percent::from_micros(33_333_333).reached_by(1, 3));
    assert_eq!(Percent::of(1, 3), Some(Percent::from_micros(33_333_333)));
    assert_eq!(Percent::from_micros(99_500_000).to_string(), "99.5");
    assert!(Percent::whole(100).reached_by(i128::MAX / 2, 1));
}

#[test]
fn a_budget_describes_itself_in_one_line() {
    let p = BudgetPolicy::parse(EXAMPLE).unwrap();
    assert_eq!(
        p.budgets[0].describe(),
        "acme-search-monthly [month:tenant_id=acme,team=search] 1000.00 USD in UTC: 50% notify, 80% throttle, 90% reroute, \
         100% block; look-ahead 2 s, burn window 60 s"
    );
}

#[test]
fn alert_states_default_to_every_state_and_are_checked() {
    let b = &BudgetPolicy::parse(EXAMPLE).unwrap().budgets[0];
    assert_eq!(b.alert.len(), BudgetState::ALL.len());
    let text = EXAMPLE.replace("limit_usd = \"1000.00\"", "limit_usd = \"1000.00\"\nalert = [\"throttle\", \"BLOCK\"]");
    let b = &BudgetPolicy::parse(&text).unwrap().budgets[0];
    assert_eq!(b.alert.iter().copied().collect::<Vec<_>>(), vec![BudgetState::Throttle, BudgetState::Block]);
    let bad = EXAMPLE.replace("limit_usd = \"1000.00\"", "limit_usd = \"1000.00\"\nalert = [\"panic\", 3]");
    let err = BudgetPolicy::parse(&bad).unwrap_err().to_string();
    assert!(err.contains("field `alert[1]`: \"panic\" is not a state") && err.contains("field `alert[2]`"), "{err}");
}

#[test]
fn a_lease_budget_says_so() {
    let text = EXAMPLE.replace("limit_usd = \"1000.00\"", "limit_usd = \"1000.00\"\nenforcement = \"lease\"");
    let b = &BudgetPolicy::parse(&text).unwrap().budgets[0];
    assert_eq!(b.enforcement, Enforcement::Lease);
    assert!(b.describe().ends_with("; quota leases"), "{}", b.describe());
    assert_eq!(BudgetPolicy::parse(EXAMPLE).unwrap().budgets[0].enforcement, Enforcement::Signal);
}
