//! The prices of one set of price fields, resolved ahead: for every service tier the fields name
//! and every range of `input_tokens` between two long-context thresholds, the six prices of
//! docs/pricing.md "The formula" (steps 1 and 2, the tier ratio of step 1.3 included). Pricing an
//! event then finds its row instead of walking the rules, so the rules cost nothing per event.

use crate::pricing::{FieldSet, PriceField, ResolvedPrices};

/// The resolved prices of one field set (an entry's, one of its `tiered_pricing` tiers, its
/// off-peak prices, or a `prices` override).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PriceTable {
    /// The least `input_tokens` of each range above the first, ascending: `N*1000 + 1` for a
    /// threshold `N` (`N*1000` for xAI's inclusive one).
    starts: Box<[u64]>,
    /// The service-tier suffixes (without `_`) the fields name; row block 0 is no tier.
    tiers: Box<[Box<str>]>,
    /// `(1 + tiers) * (1 + starts)` rows: the block of a tier, then its range.
    rows: Box<[ResolvedPrices]>,
}

impl PriceTable {
    /// Resolves every row; `None` when the fields lack an input or an output price.
    pub(crate) fn build(fields: &FieldSet, inclusive: bool) -> Option<PriceTable> {
        let mut starts: Vec<u64> =
            fields.iter().flat_map(|f| f.thresholds()).map(|n| if inclusive { n } else { n.saturating_add(1) }).collect();
        starts.sort_unstable();
        starts.dedup();
        let mut tiers: Vec<Box<str>> = Vec::new();
        for f in PriceField::TIERED {
            for t in fields[f.index()].tiers() {
                if !tiers.contains(&t.tier) {
                    tiers.push(t.tier.clone());
                }
            }
        }
        // The first token count of each range is its representative: the rules depend on
        // `input_tokens` only through the thresholds it passes.
        let inputs: Vec<u64> = std::iter::once(0).chain(starts.iter().copied()).collect();
        let mut rows = Vec::with_capacity((tiers.len() + 1) * inputs.len());
        for tier in std::iter::once(None).chain(tiers.iter().map(|t| Some(&**t))) {
            for &input in &inputs {
                rows.push(ResolvedPrices::resolve(fields, tier, input, inclusive)?);
            }
        }
        Some(PriceTable { starts: starts.into(), tiers: tiers.into(), rows: rows.into() })
    }

    /// The six prices for service-tier suffix `tier` and `input_tokens`.
    #[inline]
    pub(crate) fn get(&self, tier: Option<&str>, input_tokens: u64) -> &ResolvedPrices {
        let block = match tier {
            None => 0,
            Some(t) => self.tiers.iter().position(|x| &**x == t).map_or(0, |i| i + 1),
        };
        let range = self.starts.iter().take_while(|&&s| input_tokens >= s).count();
        &self.rows[block * (self.starts.len() + 1) + range]
    }

    /// The service tiers the fields price (suffixes without `_`).
    pub(crate) fn tiers(&self) -> &[Box<str>] {
        &self.tiers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Money;

    fn m(picos: i128) -> Money {
        Money::from_picos(picos)
    }

    #[test]
    fn rows_follow_the_rules_at_every_boundary() {
        let mut f: FieldSet = Default::default();
        f[PriceField::Input.index()].set(None, None, m(100));
        f[PriceField::Input.index()].set(None, Some(128_000), m(200));
        f[PriceField::Input.index()].set(Some("batches"), None, m(50));
        f[PriceField::Output.index()].set(None, None, m(400));
        f[PriceField::Output.index()].set(Some("batches"), None, m(200));
        f[PriceField::CacheCreation1h.index()].set(None, None, m(1_000));
        for inclusive in [false, true] {
            let table = PriceTable::build(&f, inclusive).unwrap();
            for input in [0, 1, 127_999, 128_000, 128_001, 10_000_000] {
                for tier in [None, Some("batches"), Some("flex")] {
                    let want = ResolvedPrices::resolve(&f, tier, input, inclusive).unwrap();
                    assert_eq!(*table.get(tier, input), want, "{tier:?} {input} {inclusive}");
                }
            }
            // the 1h cache write in batch is input-side: 1000 * 50/100 below 128k and 1000 * 50/200
            // above it (xAI's entries: from 128,000 on)
            assert_eq!(table.get(Some("batches"), 1).cache_write_1h, m(500));
            assert_eq!(table.get(Some("batches"), 128_000).cache_write_1h, m(if inclusive { 250 } else { 500 }));
            assert_eq!(table.get(Some("batches"), 128_001).cache_write_1h, m(250));
        }
    }
}
