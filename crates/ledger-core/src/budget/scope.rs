//! Budget scopes: which attribution a budget limits, and its canonical key.

use crate::aggregate::SpendScope;
use crate::attribution::AttributionKey;
use crate::signal::BudgetPeriod;

pub use crate::attribution::KEY_FIELDS as SCOPE_FIELDS;

/// The attribution a budget limits: a tenant and, depending on the [`SpendScope`] shape, a team,
/// project, user, API key and/or model. Exactly the spend updates of the same shape and values
/// count toward it (the processor publishes one aggregate per shape, so nothing is counted twice).
pub type BudgetScope = AttributionKey;

/// Human-readable shape name of a [`SpendScope`] for error messages, e.g. `tenant_id + team`.
pub fn shape_description(shape: SpendScope) -> String {
    let (team, project, user, key, model) = shape.fields();
    let mut parts = vec!["tenant_id"];
    for (on, name) in [(team, "team"), (project, "project"), (user, "user_id"), (key, "api_key_id"), (model, "model")] {
        if on {
            parts.push(name);
        }
    }
    parts.join(" + ")
}

/// The key of a budget signal on the compacted signals topic: `<period>:<canonical scope>`,
/// e.g. `month:tenant_id=acme,team=search`. Routers match by `scope_fields`, never by parsing it.
pub fn signal_key(period: BudgetPeriod, scope: &BudgetScope) -> String {
    format!("{}:{}", period.as_str(), scope.canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(team: Option<&str>, model: Option<&str>) -> BudgetScope {
        let mut s = BudgetScope::default();
        s.attribution.tenant_id = "acme".into();
        s.attribution.team = team.map(Into::into);
        s.model = model.map(Into::into);
        s
    }

    #[test]
    fn canonical_key_orders_and_escapes() {
        assert_eq!(signal_key(BudgetPeriod::Month, &scope(Some("search"), None)), "month:tenant_id=acme,team=search");
        let s = scope(Some("a,b=c:d%"), Some("gpt-4o"));
        assert_eq!(s.canonical(), "tenant_id=acme,team=a%2Cb%3Dc%3Ad%25,model=gpt-4o");
        assert_eq!(SpendScope::of_key(&s), Some(SpendScope::TeamModel));
    }

    #[test]
    fn shapes() {
        assert_eq!(SpendScope::of_key(&scope(None, None)), Some(SpendScope::Tenant));
        let mut s = scope(None, None);
        s.attribution.user_id = Some("u".into());
        s.model = Some("m".into());
        assert_eq!(SpendScope::of_key(&s), None, "user + model is not a spend shape");
        assert_eq!(shape_description(SpendScope::ProjectModel), "tenant_id + team + project + model");
    }
}
