//! Who a call is billed to: the one attribution type of the event, spend and budget code.
//!
//! [`Attribution`] is the payer of one call (tenant and, when known, team, project, end user
//! and API key); it is part of every [`UsageEvent`](crate::UsageEvent). [`AttributionKey`] adds
//! the priced model: it keys the spend aggregates (`llm.spend.v1`) and names a budget's scope.
//! Both are generic over the string type, so the processor's hot path works on borrowed views
//! (`Attribution<&str>`) of the same type the services own (`Attribution<String>`). Wire formats
//! that carry the fields flat (the JSON event, the spend update) embed them with
//! `#[serde(flatten)]`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The field names of an [`AttributionKey`], in canonical order.
pub const KEY_FIELDS: [&str; 6] = ["tenant_id", "team", "project", "user_id", "api_key_id", "model"];

/// Who one call is billed to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attribution<S = String> {
    /// Tenant (customer or business unit) the call is billed to; the Kafka key of usage events.
    pub tenant_id: S,
    /// Team within the tenant.
    #[serde(default)]
    pub team: Option<S>,
    /// Project within the team.
    #[serde(default)]
    pub project: Option<S>,
    /// End user, when known.
    #[serde(default)]
    pub user_id: Option<S>,
    /// API key the call was made with.
    #[serde(default)]
    pub api_key_id: Option<S>,
}

/// An [`Attribution`] and the priced model: the key of a spend aggregate and the scope of a
/// budget. A field that is `None` is not part of the key (a tenant-wide budget has only
/// `tenant_id`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttributionKey<S = String> {
    /// Who pays.
    #[serde(flatten)]
    pub attribution: Attribution<S>,
    /// The priced model (catalog key), when the key has it.
    #[serde(default)]
    pub model: Option<S>,
}

impl<S: AsRef<str>> Attribution<S> {
    /// A borrowed view.
    pub fn as_ref(&self) -> Attribution<&str> {
        Attribution {
            tenant_id: self.tenant_id.as_ref(),
            team: self.team.as_ref().map(AsRef::as_ref),
            project: self.project.as_ref().map(AsRef::as_ref),
            user_id: self.user_id.as_ref().map(AsRef::as_ref),
            api_key_id: self.api_key_id.as_ref().map(AsRef::as_ref),
        }
    }

    /// An owned copy.
    pub fn to_owned_attribution(&self) -> Attribution {
        let own = |s: &Option<S>| s.as_ref().map(|s| s.as_ref().to_owned());
        Attribution {
            tenant_id: self.tenant_id.as_ref().to_owned(),
            team: own(&self.team),
            project: own(&self.project),
            user_id: own(&self.user_id),
            api_key_id: own(&self.api_key_id),
        }
    }

    /// The key of this attribution with `model`.
    pub fn with_model<'a>(&'a self, model: Option<&'a str>) -> AttributionKey<&'a str> {
        AttributionKey { attribution: self.as_ref(), model }
    }
}

impl<'a> Attribution<&'a str> {
    /// A call of `tenant_id` with no further attribution.
    pub fn tenant(tenant_id: &'a str) -> Self {
        Attribution { tenant_id, team: None, project: None, user_id: None, api_key_id: None }
    }

    /// The same attribution, of `team`.
    pub fn team(mut self, team: &'a str) -> Self {
        self.team = Some(team);
        self
    }

    /// The same attribution, of `project`.
    pub fn project(mut self, project: &'a str) -> Self {
        self.project = Some(project);
        self
    }

    /// The same attribution, by `user_id`.
    pub fn user(mut self, user_id: &'a str) -> Self {
        self.user_id = Some(user_id);
        self
    }

    /// The same attribution, with `api_key_id`.
    pub fn api_key(mut self, api_key_id: &'a str) -> Self {
        self.api_key_id = Some(api_key_id);
        self
    }
}

impl<S: AsRef<str>> AttributionKey<S> {
    /// A borrowed view.
    pub fn as_ref(&self) -> AttributionKey<&str> {
        AttributionKey { attribution: self.attribution.as_ref(), model: self.model.as_ref().map(AsRef::as_ref) }
    }

    /// An owned copy.
    pub fn to_owned_key(&self) -> AttributionKey {
        AttributionKey {
            attribution: self.attribution.to_owned_attribution(),
            model: self.model.as_ref().map(|m| m.as_ref().to_owned()),
        }
    }

    /// The six values in the order of [`KEY_FIELDS`] (`tenant_id` always set).
    pub fn values(&self) -> [Option<&str>; 6] {
        let a = &self.attribution;
        fn opt<S: AsRef<str>>(s: &Option<S>) -> Option<&str> {
            s.as_ref().map(AsRef::as_ref)
        }
        [Some(a.tenant_id.as_ref()), opt(&a.team), opt(&a.project), opt(&a.user_id), opt(&a.api_key_id), opt(&self.model)]
    }

    /// `(field name, value)` of every set field, in canonical order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.values().into_iter().zip(KEY_FIELDS).filter_map(|(v, name)| v.map(|v| (name, v)))
    }

    /// The fields as a map, as `BudgetSignal::scope_fields` carries them.
    pub fn field_map(&self) -> BTreeMap<String, String> {
        self.fields().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    /// Which of team, project, user, API key and model are set, in the order of
    /// [`SpendScope::fields`](crate::aggregate::SpendScope::fields).
    pub fn set_fields(&self) -> (bool, bool, bool, bool, bool) {
        let a = &self.attribution;
        (a.team.is_some(), a.project.is_some(), a.user_id.is_some(), a.api_key_id.is_some(), self.model.is_some())
    }

    /// The canonical form: `name=value` of every set field in the order of [`KEY_FIELDS`],
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
}

impl AttributionKey {
    /// A key from `(field name, value)` pairs (names of [`KEY_FIELDS`]); `None` when a name is
    /// unknown or `tenant_id` is missing.
    pub fn from_fields<'n, 'v>(fields: impl IntoIterator<Item = (&'n str, &'v str)>) -> Option<AttributionKey> {
        let mut key = AttributionKey::default();
        let mut tenant = None;
        for (name, value) in fields {
            let v = Some(value.to_owned());
            match name {
                "tenant_id" => tenant = v,
                "team" => key.attribution.team = v,
                "project" => key.attribution.project = v,
                "user_id" => key.attribution.user_id = v,
                "api_key_id" => key.attribution.api_key_id = v,
                "model" => key.model = v,
                _ => return None,
            }
        }
        key.attribution.tenant_id = tenant?;
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_canonical_and_reads_back_from_its_fields() {
        let who = Attribution::tenant("acme").team("se,arch").user("u=1");
        let key = who.with_model(Some("gpt-4o"));
        assert_eq!(key.canonical(), "tenant_id=acme,team=se%2Carch,user_id=u%3D1,model=gpt-4o");
        assert_eq!(key.set_fields(), (true, false, true, false, true));
        let owned = key.to_owned_key();
        let back = AttributionKey::from_fields(owned.fields());
        assert_eq!(back.as_ref(), Some(&owned));
        assert_eq!(owned.canonical(), key.canonical());
        assert_eq!(AttributionKey::from_fields([("team", "x")]), None, "tenant_id is required");
        assert_eq!(AttributionKey::from_fields([("tenant_id", "a"), ("colour", "x")]), None);
    }

    #[test]
    fn the_json_form_is_flat() {
        let key: AttributionKey = serde_json::from_str(r#"{"tenant_id":"acme","team":"search","model":"m"}"#).unwrap();
        assert_eq!(key.attribution.team.as_deref(), Some("search"));
        assert_eq!(key.attribution.project, None);
        let json = serde_json::to_value(&key).unwrap();
        assert_eq!(json["tenant_id"], "acme");
        assert_eq!(json["model"], "m");
    }
}
