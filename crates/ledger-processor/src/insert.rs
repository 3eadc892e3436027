//! Inserts and their retries: what runs beside consumption, and how a retry stays exactly once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_clickhouse::{LedgerWriter, SealedBatch};
use ledger_core::aggregate::SpendAggregator;

/// An insert running beside consumption: the batches of a lane's partitions that had rows, in
/// one `INSERT` (a partition is in at most one insert in flight, so its rows land in offset order).
pub(crate) struct GroupInsert {
    pub(crate) handle: tokio::task::JoinHandle<Result<(usize, Duration), ledger_clickhouse::Error>>,
    pub(crate) parts: Vec<PartInsert>,
}

/// A partition's share of a [`GroupInsert`].
pub(crate) struct PartInsert {
    pub(crate) partition: i32,
    pub(crate) generation: u64,
    /// Offset of the last message the batch covers (committed once the insert is done).
    pub(crate) last_seen: i64,
    /// Offset of the batch's last row.
    pub(crate) last_offset: i64,
    /// The batch's spend, published once the insert is done.
    pub(crate) spend: SpendAggregator,
}

/// Counts inserts in flight; the rebalance barrier waits until none is left, so a revoked
/// partition's rows are in ClickHouse before its next owner reads the fence.
#[derive(Debug, Default)]
pub(crate) struct InflightCounter {
    count: std::sync::Mutex<usize>,
    zero: std::sync::Condvar,
}

/// Held by an insert task; dropping it ends the insert's count.
pub(crate) struct InflightGuard(Arc<InflightCounter>);

impl InflightCounter {
    pub(crate) fn start(self: &Arc<Self>) -> InflightGuard {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        InflightGuard(self.clone())
    }

    /// Blocks until no insert is in flight, at most `timeout`; false on timeout.
    pub(crate) fn wait_zero(&self, timeout: Duration) -> bool {
        let guard = self.count.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self.zero.wait_timeout_while(guard, timeout, |n| *n > 0).unwrap_or_else(|p| p.into_inner());
        *guard == 0
    }

    /// The barrier the consumer runs inside a revoke (on a runtime worker: block_in_place).
    pub(crate) fn barrier(self: &Arc<Self>) -> Arc<dyn Fn() + Send + Sync> {
        let counter = self.clone();
        Arc::new(move || {
            let wait = || {
                if !counter.wait_zero(Duration::from_secs(120)) {
                    tracing::error!("inserts still in flight after 120 s while partitions are revoked");
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(wait),
                _ => wait(),
            }
        })
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let mut n = self.0.count.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.0.zero.notify_all();
        }
    }
}

/// One batch of a failed insert, as the retry sees it: its partition and offset range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchSpan {
    pub(crate) partition: i32,
    pub(crate) first_offset: i64,
    pub(crate) last_offset: i64,
}

/// After a failed attempt: the partitions whose batch is in the ledger already, given the
/// ledger's fence (`fence(partition)`, the highest offset it holds). A batch lands all or none
/// (one `ingest_time`, one part), so a fence inside a batch is an error: writing it again
/// would double its first rows.
pub(crate) fn landed(spans: &[BatchSpan], fence: impl Fn(i32) -> i64) -> Result<Vec<i32>, String> {
    let mut out = Vec::new();
    for s in spans {
        let w = fence(s.partition);
        if w >= s.last_offset {
            out.push(s.partition);
        } else if w >= s.first_offset {
            return Err(format!(
                "partition {} is in the ledger up to offset {w}, inside the batch {}..={} that failed to insert",
                s.partition, s.first_offset, s.last_offset
            ));
        }
    }
    Ok(out)
}

/// Inserts the batches of several partitions as one `INSERT`, retrying what can be retried.
/// A failed attempt may have landed (the server can commit and then lose the connection), so
/// before each retry the ledger's fence is read — however long ClickHouse takes to come back —
/// and the batches whose last offset is in the ledger are dropped ([`landed`]).
pub(crate) async fn insert_with_retry(
    writer: LedgerWriter,
    mut batches: Vec<SealedBatch>,
) -> Result<(usize, Duration), ledger_clickhouse::Error> {
    let started = Instant::now();
    let rows = batches.iter().map(|b| b.span().len()).sum();
    let mut attempt = 0u32;
    loop {
        match writer.insert_encoded(&batches).await {
            Ok(()) => break,
            Err(e) if e.is_retryable() => {
                attempt += 1;
                tracing::warn!(attempt, error = %e, "ledger insert failed; retrying after reading the fence");
                tokio::time::sleep(backoff(attempt)).await;
                let Some(topic) = batches.first().map(|b| b.span().topic().to_owned()) else { break };
                let fence =
                    retrying("reading the ledger fence before retrying an insert", || writer.high_watermarks(&topic)).await?;
                let spans: Vec<BatchSpan> = batches
                    .iter()
                    .map(|b| BatchSpan {
                        partition: b.span().partition(),
                        first_offset: b.span().first_offset(),
                        last_offset: b.span().last_offset(),
                    })
                    .collect();
                let landed = landed(&spans, |p| fence.get(&p).copied().unwrap_or(-1)).map_err(|problem| {
                    // Never expected; a restart resumes exactly after the fence.
                    ledger_clickhouse::Error::InvalidBatch(format!(
                        "{topic}: {problem}; restart the processor to resume after the fence"
                    ))
                })?;
                if !landed.is_empty() {
                    tracing::info!(partitions = ?landed, "the failed insert had landed for these partitions; not writing them again");
                    batches.retain(|b| !landed.contains(&b.span().partition()));
                }
                if batches.is_empty() {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok((rows, started.elapsed()))
}

/// The wait before retry `attempt` (1-based): 200 ms more each time, at most 5 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * u64::from(attempt.min(25)))
}

/// Runs a ClickHouse call until it succeeds or fails for a reason retrying cannot fix.
/// Backs off up to 5 s between attempts; the partition waits, nothing is skipped.
pub(crate) async fn retrying<T, F, Fut>(what: &str, mut call: F) -> Result<T, ledger_clickhouse::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ledger_clickhouse::Error>>,
{
    let mut attempt = 0u32;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() => {
                attempt += 1;
                tracing::warn!(attempt, error = %e, "{what} failed; retrying");
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(partition: i32, first_offset: i64, last_offset: i64) -> BatchSpan {
        BatchSpan { partition, first_offset, last_offset }
    }

    #[test]
    fn a_retry_drops_exactly_the_batches_the_ledger_holds() {
        let spans = [span(0, 10, 19), span(1, 5, 5), span(2, 0, 3)];
        let fence = |p: i32| [19, 4, -1][p as usize];
        assert_eq!(landed(&spans, fence), Ok(vec![0]));
        assert_eq!(landed(&spans, |_| -1), Ok(vec![]));
        assert_eq!(landed(&spans, |_| 100), Ok(vec![0, 1, 2]));
    }

    #[test]
    fn a_fence_inside_a_batch_stops_the_retry() {
        let err = landed(&[span(3, 10, 19)], |_| 12).unwrap_err();
        assert!(err.contains("partition 3 is in the ledger up to offset 12, inside the batch 10..=19"), "{err}");
    }

    #[test]
    fn backoff_grows_to_five_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(25), Duration::from_secs(5));
        assert_eq!(backoff(1000), Duration::from_secs(5));
    }

    #[test]
    fn the_barrier_waits_for_inserts_in_flight() {
        let counter = Arc::new(InflightCounter::default());
        assert!(counter.wait_zero(Duration::ZERO));
        let guard = counter.start();
        assert!(!counter.wait_zero(Duration::from_millis(10)));
        let c = counter.clone();
        let waiter = std::thread::spawn(move || c.wait_zero(Duration::from_secs(10)));
        drop(guard);
        assert!(waiter.join().unwrap());
    }
}
