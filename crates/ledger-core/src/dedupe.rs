//! Bounded idempotency state: which `event_id`s were accepted recently.
//!
//! Entries expire `horizon` after they were first seen (by the caller's clock, in
//! milliseconds), and the set never holds more than `capacity` ids: past that the oldest are
//! evicted first. A resend that arrives after its id was evicted is counted again, which is
//! why the horizon is a documented contract (default one hour).

use std::collections::{HashSet, VecDeque};

/// A set of recently accepted event ids with time- and size-based eviction.
#[derive(Debug, Clone)]
pub struct DedupeWindow {
    horizon_ms: i64,
    capacity: usize,
    ids: HashSet<Box<str>>,
    order: VecDeque<(i64, Box<str>)>,
}

impl DedupeWindow {
    /// An empty window keeping ids for `horizon_ms`, at most `capacity` of them.
    pub fn new(horizon_ms: i64, capacity: usize) -> Self {
        DedupeWindow { horizon_ms, capacity: capacity.max(1), ids: HashSet::new(), order: VecDeque::new() }
    }

    /// True when `id` was accepted within the horizon.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Records `id` as accepted at `now_ms`; returns false when it was already present.
    pub fn insert(&mut self, id: &str, now_ms: i64) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        self.expire(now_ms);
        while self.ids.len() >= self.capacity {
            match self.order.pop_front() {
                Some((_, old)) => {
                    self.ids.remove(&old);
                }
                None => break,
            }
        }
        let boxed: Box<str> = id.into();
        self.ids.insert(boxed.clone());
        self.order.push_back((now_ms, boxed));
        true
    }

    /// Drops ids first seen more than the horizon before `now_ms`.
    pub fn expire(&mut self, now_ms: i64) {
        while let Some((seen, _)) = self.order.front() {
            if now_ms - *seen <= self.horizon_ms {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    /// Number of ids held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no id is held.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Where an event's time stands against the acceptance window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeCheck {
    /// Inside the window.
    Accepted,
    /// Older than `now - max_age`.
    TooOld,
    /// Later than `now + max_future`.
    InFuture,
}

/// Checks `event_ms` against `[now - max_age, now + max_future]` (all in milliseconds).
pub fn check_event_time(event_ms: i64, now_ms: i64, max_age_ms: i64, max_future_ms: i64) -> TimeCheck {
    if event_ms < now_ms.saturating_sub(max_age_ms) {
        TimeCheck::TooOld
    } else if event_ms > now_ms.saturating_add(max_future_ms) {
        TimeCheck::InFuture
    } else {
        TimeCheck::Accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_within_horizon_are_seen() {
        let mut w = DedupeWindow::new(1_000, 10);
        assert!(w.insert("a", 0));
        assert!(!w.insert("a", 999));
        assert!(w.contains("a"));
        w.expire(1_001);
        assert!(!w.contains("a"));
        assert!(w.insert("a", 1_002));
    }

    #[test]
    fn capacity_evicts_oldest() {
        let mut w = DedupeWindow::new(i64::MAX, 3);
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            w.insert(id, i as i64);
        }
        assert_eq!(w.len(), 3);
        assert!(!w.contains("a"));
        assert!(w.contains("d"));
    }

    #[test]
    fn time_window_bounds() {
        assert_eq!(check_event_time(100, 100, 10, 5), TimeCheck::Accepted);
        assert_eq!(check_event_time(90, 100, 10, 5), TimeCheck::Accepted);
        assert_eq!(check_event_time(89, 100, 10, 5), TimeCheck::TooOld);
        assert_eq!(check_event_time(105, 100, 10, 5), TimeCheck::Accepted);
        assert_eq!(check_event_time(106, 100, 10, 5), TimeCheck::InFuture);
    }
}
