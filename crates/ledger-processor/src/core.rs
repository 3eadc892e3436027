//! The processor's state beside its consumer. Its methods live with what they do: partitions
//! and messages (`partition`), lanes and flushes (`lanes`), completing inserts (`commit`),
//! spend (`spend`), the loop (`runner`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rdkafka::producer::FutureProducer;

use ledger_clickhouse::LedgerWriter;
use ledger_core::catalog::Catalog;
use ledger_core::spend::SpendUpdate;
use ledger_core::UsageEvent;
use ledger_kafka::consumer::RecordingContext;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::config::ProcessorConfig;
use crate::insert::{GroupInsert, InflightCounter};
use crate::spend::Ack;
use crate::state::PartitionState;
use crate::stats::Stats;

/// The processor's state beside its consumer.
pub(crate) struct Core {
    pub(crate) config: ProcessorConfig,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) codec: ledger_schema::Codec<UsageEvent>,
    /// The writer schemas of the Confluent schema ids seen (configured ids, then the registry).
    pub(crate) schema_ids: ledger_registry::IdResolver,
    pub(crate) spend_codec: ledger_schema::Codec<SpendUpdate>,
    pub(crate) writer: LedgerWriter,
    pub(crate) producer: FutureProducer,
    pub(crate) context: RecordingContext,
    pub(crate) partitions: HashMap<i32, PartitionState>,
    /// Assigned partitions not yet initialised, and since when: one that stays quiet is
    /// initialised anyway, so a killed predecessor's unpublished spend is not left waiting for
    /// the partition's next message.
    pub(crate) uninitialised: HashMap<i32, Instant>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) inflight: Arc<InflightCounter>,
    /// The inserts in flight, oldest first: at most one per lane, none sharing a partition.
    pub(crate) inserts: Vec<GroupInsert>,
    /// Source of [`PartitionState::generation`].
    pub(crate) generations: u64,
    /// Signalled by every finished insert, so its spend is published at once, not at the next tick.
    pub(crate) insert_done: Arc<tokio::sync::Notify>,
    /// Spend publications acknowledged, sent by their delivery tasks ([`crate::spend::Ack`]).
    pub(crate) acks: (UnboundedSender<Ack>, UnboundedReceiver<Ack>),
}
