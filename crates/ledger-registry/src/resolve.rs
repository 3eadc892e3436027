//! Schema ids for readers ([`IdResolver`]) and writers ([`wire_format`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ledger_core::UsageEvent;
use ledger_schema::{confluent_schema_id, AvroRecord, Framing, IdWriter, RecordSchema, SchemaIds, WireFormat};

use crate::client::RegistryClient;
use crate::config::{value_subject, SchemaSettings};
use crate::RegistryError;

/// How long an id the registry did not know is taken as unknown before it is asked again
/// (a schema registered meanwhile is then found).
pub const UNKNOWN_ID_RECHECK: Duration = Duration::from_secs(60);

/// The usage event schema this program reads and writes.
fn usage_schema() -> Result<&'static RecordSchema, RegistryError> {
    ledger_schema::schema_of::<UsageEvent>().map_err(|e| RegistryError::Config(format!("usage event schema: {e}")))
}

/// The writer schemas behind the Confluent schema ids of usage events, for a reader: the
/// configured `schema.ids` first, then the registry, each id asked once (an unknown id again
/// after [`UNKNOWN_ID_RECHECK`]).
///
/// Call [`IdResolver::prepare`] with each message before decoding it with
/// [`ledger_schema::Codec::decode_framed_with`] and [`IdResolver::ids`]: it returns at once for
/// single-object messages and known ids.
#[derive(Debug)]
pub struct IdResolver {
    schema: &'static RecordSchema,
    ids: SchemaIds,
    registry: Option<RegistryClient>,
    /// Ids the registry did not know, and when it said so.
    unknown_since: HashMap<u32, Instant>,
}

impl IdResolver {
    /// A resolver for `settings`: the configured ids are read now (an unreadable file is an
    /// error naming its setting); the registry is only asked for the ids messages name.
    pub fn new(settings: &SchemaSettings) -> Result<Self, RegistryError> {
        let schema = usage_schema()?;
        let registry = settings.registry.as_ref().map(RegistryClient::new).transpose()?;
        let unknown = match &registry {
            Some(r) => format!("not among the configured schema.ids, and the schema registry at {} does not know it", r.url()),
            None => "not among the configured schema.ids, and no schema.registry is configured".to_owned(),
        };
        let mut ids = SchemaIds::new(unknown);
        for (id, writer) in settings.configured_ids(schema)? {
            ids.insert(id, writer);
        }
        Ok(IdResolver { schema, ids, registry, unknown_since: HashMap::new() })
    }

    /// The ids known so far.
    #[inline]
    pub fn ids(&self) -> &SchemaIds {
        &self.ids
    }

    /// Learns the id `message` names, if it is a Confluent message with an id not known yet
    /// (or not known to the registry for [`UNKNOWN_ID_RECHECK`]). An id the registry does not
    /// know, or whose schema is not a readable Avro schema, gets a
    /// [`IdWriter::Rejected`] entry: its messages are poison. Errors only when the registry
    /// cannot be asked ([`RegistryError::is_retryable`] says whether to try again).
    #[inline]
    pub async fn prepare(&mut self, message: &[u8]) -> Result<(), RegistryError> {
        let Some(id) = confluent_schema_id(message) else { return Ok(()) };
        match self.ids.get(id) {
            Some(IdWriter::Rejected(_)) if self.unknown_since.get(&id).is_some_and(|t| t.elapsed() >= UNKNOWN_ID_RECHECK) => {}
            Some(_) => return Ok(()),
            None => {}
        }
        self.learn(id).await
    }

    async fn learn(&mut self, id: u32) -> Result<(), RegistryError> {
        let Some(registry) = &self.registry else { return Ok(()) };
        let writer = match registry.schema_by_id(id).await? {
            None => {
                self.unknown_since.insert(id, Instant::now());
                IdWriter::Rejected(format!("unknown to the schema registry at {}", registry.url()).into())
            }
            Some(found) if !found.schema_type.eq_ignore_ascii_case("AVRO") => {
                IdWriter::Rejected(format!("a {} schema in the registry, not Avro", found.schema_type).into())
            }
            Some(found) => self.schema.id_writer(&found.schema),
        };
        if !matches!(writer, IdWriter::Rejected(_)) {
            self.unknown_since.remove(&id);
        }
        tracing::info!(id, writer = ?writer, registry = registry.url(), "learned a Confluent schema id");
        self.ids.insert(id, writer);
        Ok(())
    }
}

/// What producers of `topic` write: single-object framing, or the Confluent wire format with
/// the current usage event schema's id, from `schema.ids` when it names the current schema,
/// else from the registry (registered under `<topic>-value` when `auto_register`, else looked
/// up there).
pub async fn wire_format(settings: &SchemaSettings, topic: &str) -> Result<WireFormat, RegistryError> {
    if settings.framing == Framing::SingleObject {
        settings.validate()?;
        return Ok(WireFormat::SingleObject);
    }
    let schema = usage_schema()?;
    let configured = settings.configured_ids(schema)?;
    if let Some(schema_id) = configured.iter().filter(|(_, w)| matches!(w, IdWriter::Current)).map(|(id, _)| *id).min() {
        return Ok(WireFormat::Confluent { schema_id });
    }
    let Some(config) = &settings.registry else {
        return Err(RegistryError::Config(
            "schema.framing = \"confluent\" needs the current schema's id: set schema.registry.url, or a schema.ids \
             entry \"<id>\" = \"current\""
                .to_owned(),
        ));
    };
    let registry = RegistryClient::new(config)?;
    let subject = value_subject(topic);
    let schema_id = if config.auto_register {
        registry.register(&subject, UsageEvent::AVSC).await?
    } else {
        registry
            .lookup(&subject, UsageEvent::AVSC)
            .await?
            .ok_or_else(|| RegistryError::NotRegistered { url: registry.url().to_owned(), subject: subject.clone() })?
    };
    tracing::info!(schema_id, subject, registry = registry.url(), "usage events framed with the Confluent wire format");
    Ok(WireFormat::Confluent { schema_id })
}

/// [`wire_format`] for callers without an async runtime (or inside one they must not block):
/// runs on a thread of its own with a runtime of its own. Blocking.
pub fn wire_format_blocking(settings: &SchemaSettings, topic: &str) -> Result<WireFormat, RegistryError> {
    if settings.framing == Framing::SingleObject {
        settings.validate()?;
        return Ok(WireFormat::SingleObject);
    }
    let (settings, topic) = (settings.clone(), topic.to_owned());
    std::thread::Builder::new()
        .name("ledger-registry".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| RegistryError::Config(format!("cannot start a runtime for the registry client: {e}")))?;
            runtime.block_on(wire_format(&settings, &topic))
        })
        .map_err(|e| RegistryError::Config(format!("cannot start the registry client's thread: {e}")))?
        .join()
        .unwrap_or_else(|_| Err(RegistryError::Config("the registry client's thread panicked".to_owned())))
}
