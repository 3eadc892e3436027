//! Budget scopes: which attribution a budget limits, and its canonical key.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::aggregate::SpendScope;
use crate::signal::BudgetPeriod;
use crate::spend::SpendUpdate;

/// The scope field names, in canonical order.
pub const SCOPE_FIELDS: [&str; 6] = ["tenant_id", "team", "project", "user_id", "api_key_id", "model"];

/// The attribution a budget limits: a tenant and, depending on the [`SpendScope`] shape, a team,
/// project, user, API key and/or model. Exactly the spend updates of the same shape and values
/// count toward it (the processor publishes one aggregate per shape, so nothing is counted twice).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BudgetScope {
    /// Tenant.
    pub tenant_id: String,
    /// Team.
    pub team: Option<String>,
    /// Project.
    pub project: Option<String>,
    /// End user.
    pub user_id: Option<String>,
    /// API key.
    pub api_key_id: Option<String>,
    /// Priced model.
    pub model: Option<String>,
}

impl BudgetScope {
    /// The scope of a spend update (its attribution fields).
    pub fn of_update(u: &SpendUpdate) -> BudgetScope {
        BudgetScope {
            tenant_id: u.tenant_id.clone(),
            team: u.team.clone(),
            project: u.project.clone(),
            user_id: u.user_id.clone(),
            api_key_id: u.api_key_id.clone(),
            model: u.model.clone(),
        }
    }

    /// True when `u` is an aggregate of exactly this scope (same shape, same values).
    pub fn matches(&self, u: &SpendUpdate) -> bool {
        self.tenant_id == u.tenant_id
            && self.team == u.team
            && self.project == u.project
            && self.user_id == u.user_id
            && self.api_key_id == u.api_key_id
            && self.model == u.model
    }

    /// The [`SpendScope`] shape, or `None` when the set fields are not one of the eight shapes.
    pub fn shape(&self) -> Option<SpendScope> {
        let f = (
            self.team.is_some(),
            self.project.is_some(),
            self.user_id.is_some(),
            self.api_key_id.is_some(),
            self.model.is_some(),
        );
        SpendScope::ALL.into_iter().find(|s| s.fields() == f)
    }

    /// `(field name, value)` of every set field, in canonical order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            Some(self.tenant_id.as_str()),
            self.team.as_deref(),
            self.project.as_deref(),
            self.user_id.as_deref(),
            self.api_key_id.as_deref(),
            self.model.as_deref(),
        ]
        .into_iter()
        .zip(SCOPE_FIELDS)
        .filter_map(|(v, name)| v.map(|v| (name, v)))
    }

    /// The fields as a map, as `BudgetSignal::scope_fields` carries them.
    pub fn field_map(&self) -> BTreeMap<String, String> {
        self.fields().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    /// The canonical form: `name=value` of every set field in the order of [`SCOPE_FIELDS`],
    /// joined by `,`, values percent-escaped for `%`, `,`, `=` and `:`
    /// (e.g. `tenant_id=acme,team=search`).
    pub fn canonical(&self) -> String {
        let mut out = String::with_capacity(48);
        for (i, (name, value)) in self.fields().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(name);
            out.push('=');
            for c in value.chars() {
                match c {
                    '%' | ',' | '=' | ':' => {
                        let _ = write!(out, "%{:02X}", c as u32);
                    }
                    c => out.push(c),
                }
            }
        }
        out
    }

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
        BudgetScope {
            tenant_id: "acme".into(),
            team: team.map(Into::into),
            project: None,
            user_id: None,
            api_key_id: None,
            model: model.map(Into::into),
        }
    }

    #[test]
    fn canonical_key_orders_and_escapes() {
        assert_eq!(signal_key(BudgetPeriod::Month, &scope(Some("search"), None)), "month:tenant_id=acme,team=search");
        let s = scope(Some("a,b=c:d%"), Some("gpt-4o"));
        assert_eq!(s.canonical(), "tenant_id=acme,team=a%2Cb%3Dc%3Ad%25,model=gpt-4o");
        assert_eq!(s.shape(), Some(SpendScope::TeamModel));
    }

    #[test]
    fn shapes() {
        assert_eq!(scope(None, None).shape(), Some(SpendScope::Tenant));
        let mut s = scope(None, None);
        s.user_id = Some("u".into());
        s.model = Some("m".into());
        assert_eq!(s.shape(), None, "user + model is not a spend shape");
        assert_eq!(BudgetScope::shape_description(SpendScope::ProjectModel), "tenant_id + team + project + model");
    }
}
