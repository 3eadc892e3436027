//! The registry client: the three calls of the Confluent REST API the ledger needs, with a
//! cache (a schema id never changes its schema) and retries of what may pass.
//!
//! - `GET /schemas/ids/{id}`: the schema of an id (readers);
//! - `POST /subjects/{subject}/versions`: register a schema, answers its id (producers);
//! - `POST /subjects/{subject}`: look a schema up under a subject, answers its id (producers
//!   with `auto_register = false`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledger_core::secret::Secret;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use crate::config::{redact_url, RegistryConfig};
use crate::RegistryError;

/// The media type of the Confluent REST API (Apicurio's compatible API takes it too).
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
const ACCEPT: &str = "application/vnd.schemaregistry.v1+json, application/json";
/// First pause between attempts; doubled after each, at most [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A schema as the registry holds it under an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSchema {
    /// `AVRO`, `PROTOBUF` or `JSON` (the API leaves it out for Avro).
    pub schema_type: String,
    /// The schema text.
    pub schema: Arc<str>,
}

/// A Confluent Schema Registry client. Cheap to share; the caches are behind mutexes held
/// only to read or write an entry.
pub struct RegistryClient {
    http: reqwest::Client,
    base: Url,
    shown: String,
    user: Option<String>,
    password: Option<Secret>,
    retries: u32,
    by_id: Mutex<HashMap<u32, RegisteredSchema>>,
    by_subject: Mutex<HashMap<(String, String), u32>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient").field("url", &self.shown).field("user", &self.user).finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct SchemaAnswer {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u32,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error_code: Option<i64>,
    message: Option<String>,
}

impl RegistryClient {
    /// A client for `config` (checked first). Reads the password file and the CA file now.
    pub fn new(config: &RegistryConfig) -> Result<Self, RegistryError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(RegistryError::Config(problems.join("; ")));
        }
        let url = config.url.trim();
        let base = Url::parse(url).map_err(|e| RegistryError::Config(format!("schema.registry.url {url:?}: {e}")))?;
        if base.cannot_be_a_base() {
            return Err(RegistryError::Config(format!("schema.registry.url {url:?} cannot be a base URL")));
        }
        let tls = crate::tls::client_config(config.ca_file.as_deref())?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.timeout_ms.min(10_000)))
            .build()
            .map_err(|e| RegistryError::Config(format!("schema.registry: cannot build the HTTP client: {e}")))?;
        Ok(RegistryClient {
            http,
            base,
            shown: redact_url(url).trim_end_matches('/').to_owned(),
            user: config.user.clone(),
            password: config.resolved_password()?,
            retries: config.retries,
            by_id: Mutex::default(),
            by_subject: Mutex::default(),
        })
    }

    /// The registry's base URL, as it may be shown.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The schema registered under `id`, or `None` when the registry has no such id (HTTP 404).
    /// Cached for the life of the client.
    pub async fn schema_by_id(&self, id: u32) -> Result<Option<RegisteredSchema>, RegistryError> {
        if let Some(hit) = self.by_id.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(Some(hit.clone()));
        }
        let what = format!("fetching schema id {id}");
        let url = self.url_of(&["schemas", "ids", &id.to_string()])?;
        let (status, body) = self.call(&what, || self.http.get(url.clone())).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let answer: SchemaAnswer = self.answer(&what, status, &body)?;
        let schema = RegisteredSchema {
            schema_type: answer.schema_type.unwrap_or_else(|| "AVRO".to_owned()),
            schema: answer.schema.into(),
        };
        self.by_id.lock().unwrap_or_else(|p| p.into_inner()).insert(id, schema.clone());
        Ok(Some(schema))
    }

    /// Registers `schema` (Avro) under `subject` and returns its id; the same schema again
    /// gets the same id. The registry refuses a schema its compatibility rule forbids (HTTP 409).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        if let Some(id) = self.cached(subject, schema) {
            return Ok(id);
        }
        let what = format!("registering the schema under subject {subject}");
        let url = self.url_of(&["subjects", subject, "versions"])?;
        let (status, body) = self.call(&what, || self.post(url.clone(), schema)).await?;
        let id = self.answer::<IdAnswer>(&what, status, &body)?.id;
        self.remember(subject, schema, id);
        Ok(id)
    }

    /// The id of `schema` (Avro) under `subject`, or `None` when the subject or the schema
    /// is not registered (HTTP 404).
    pub async fn lookup(&self, subject: &str, schema: &str) -> Result<Option<u32>, RegistryError> {
        if let Some(id) = self.cached(subject, schema) {
            return Ok(Some(id));
        }
        let what = format!("looking the schema up under subject {subject}");
        let url = self.url_of(&["subjects", subject])?;
        let (status, body) = self.call(&what, || self.post(url.clone(), schema)).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let id = self.answer::<IdAnswer>(&what, status, &body)?.id;
        self.remember(subject, schema, id);
        Ok(Some(id))
    }

    fn cached(&self, subject: &str, schema: &str) -> Option<u32> {
        self.by_subject.lock().unwrap_or_else(|p| p.into_inner()).get(&(subject.to_owned(), schema.to_owned())).copied()
    }

    fn remember(&self, subject: &str, schema: &str, id: u32) {
        self.by_subject.lock().unwrap_or_else(|p| p.into_inner()).insert((subject.to_owned(), schema.to_owned()), id);
    }

    fn url_of(&self, segments: &[&str]) -> Result<Url, RegistryError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| RegistryError::Config(format!("schema.registry.url {} cannot be a base URL", self.shown)))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn post(&self, url: Url, schema: &str) -> reqwest::RequestBuilder {
        let body = serde_json::json!({ "schema": schema }).to_string();
        self.http.post(url).header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE).body(body)
    }

    /// Sends the request `build` makes, retrying what may pass; returns the final status and
    /// body (any status: the caller decides what it means).
    async fn call(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Vec<u8>), RegistryError> {
        let attempts = self.retries + 1;
        let mut pause = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = build().header(reqwest::header::ACCEPT, ACCEPT);
            if let Some(user) = &self.user {
                request = request.basic_auth(user, self.password.as_ref().map(Secret::expose));
            }
            let failure = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    match response.bytes().await {
                        Ok(body) if !retryable(status) || attempt >= attempts => return Ok((status, body.to_vec())),
                        Ok(body) => format!("HTTP {status}: {}", error_text(&body)),
                        Err(e) => describe(&e),
                    }
                }
                Err(e) => describe(&e),
            };
            if attempt >= attempts {
                return Err(RegistryError::Unavailable {
                    url: self.shown.clone(),
                    what: what.to_owned(),
                    attempts,
                    detail: failure,
                });
            }
            tracing::debug!(url = %self.shown, attempt, error = %failure, "{what} failed; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_BACKOFF);
        }
    }

    /// The JSON answer of a successful call, or the error the status means.
    fn answer<T: serde::de::DeserializeOwned>(&self, what: &str, status: StatusCode, body: &[u8]) -> Result<T, RegistryError> {
        let (url, what) = (self.shown.clone(), what.to_owned());
        if status.is_success() {
            return serde_json::from_slice(body).map_err(|e| RegistryError::BadAnswer {
                url,
                what,
                detail: format!("{e} in {}", String::from_utf8_lossy(&body[..body.len().min(200)])),
            });
        }
        let detail = error_text(body);
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(RegistryError::Unauthorized { url, what, status: status.as_u16(), detail });
        }
        if retryable(status) {
            return Err(RegistryError::Unavailable {
                url,
                what,
                attempts: self.retries + 1,
                detail: format!("HTTP {status}: {detail}"),
            });
        }
        Err(RegistryError::Refused { url, what, status: status.as_u16(), detail })
    }
}

/// Statuses worth another attempt: the registry is busy, restarting or not elected yet.
fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT
}

/// The registry's error answer (`{"error_code": 40403, "message": "..."}`) as text.
fn error_text(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorAnswer>(body) {
        Ok(ErrorAnswer { error_code: Some(code), message: Some(m) }) => format!("{m} (error code {code})"),
        Ok(ErrorAnswer { message: Some(m), .. }) => m,
        _ => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_owned();
            if text.is_empty() {
                "no details".to_owned()
            } else {
                text
            }
        }
    }
}

/// A transport failure with its causes (reqwest's own message is only the outermost one).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() { format!("timed out: {e}") } else { e.to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
