//! Chargeback: exact proportional allocation of unattributed spend, and the team → cost-center
//! mapping.
//!
//! # The allocation rule
//!
//! Spend that no line can be charged for (no team, or a team the mapping does not know) is
//! *unattributed*. It is shared among the attributed lines **in proportion to their attributed
//! spend**, by the largest-remainder method at the pico-dollar:
//!
//! 1. every line `i` with attributed spend `w_i` (total `W`) first gets
//!    `floor(U * w_i / W)` pico-dollars of the unattributed amount `U`;
//! 2. the pico-dollars left over (fewer than the number of lines) go one each to the lines with
//!    the largest remainders `U * w_i mod W`; equal remainders go to the earlier line (lines
//!    are in key order, so the result is deterministic).
//!
//! So the shares add up to `U` exactly, each share is within one pico-dollar of the exact
//! proportional value, a line without attributed spend gets nothing, and a line never gets less
//! than a line with less attributed spend. When there is no attributed spend at all (`W = 0`),
//! nothing can be proportioned: the unattributed amount stays on its own line
//! ([`Chargeback::unallocated`]). The products are computed in 256 bits, so no amount that
//! fits in [`Money`] overflows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::money::{Money, MoneyOverflow};

/// Why an allocation could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    /// An amount to allocate or a weight is negative; chargeback allocates costs, which are not.
    #[error("cannot allocate a negative amount ({what} is {amount} USD); chargeback expects non-negative costs")]
    Negative {
        /// Which amount.
        what: String,
        /// Its value.
        amount: Money,
    },
    /// A sum left the range of [`Money`].
    #[error("the amounts to allocate overflow the Decimal(38, 12) range")]
    Overflow,
}

impl From<MoneyOverflow> for AllocationError {
    fn from(_: MoneyOverflow) -> Self {
        AllocationError::Overflow
    }
}

/// `(a * b) / c` and `(a * b) % c` for `b <= c`, `c > 0`, exact in 256 bits.
///
/// The quotient is at most `a` (because `b <= c`), so it fits in `u128`; the remainder is `< c`.
fn mul_div_rem(a: u128, b: u128, c: u128) -> (u128, u128) {
    debug_assert!(c > 0 && b <= c && c < (1u128 << 127));
    // 256-bit product (hi, lo) of two u128 from 64-bit limbs.
    let mask = u128::from(u64::MAX);
    let (a_hi, a_lo) = (a >> 64, a & mask);
    let (b_hi, b_lo) = (b >> 64, b & mask);
    let lo_lo = a_lo * b_lo;
    let hi_lo = a_hi * b_lo;
    let lo_hi = a_lo * b_hi;
    let hi_hi = a_hi * b_hi;
    let cross = (lo_lo >> 64) + (hi_lo & mask) + (lo_hi & mask);
    let lo = (lo_lo & mask) | (cross << 64);
    let hi = hi_hi + (hi_lo >> 64) + (lo_hi >> 64) + (cross >> 64);
    // Binary long division of (hi, lo) by c. `c < 2^127`, so `rem << 1` never overflows.
    let mut quotient: u128 = 0;
    let mut rem: u128 = 0;
    for bit in (0..256u32).rev() {
        let next = if bit >= 128 { (hi >> (bit - 128)) & 1 } else { (lo >> bit) & 1 };
        rem = (rem << 1) | next;
        if rem >= c {
            rem -= c;
            if bit < 128 {
                quotient |= 1 << bit;
            }
        }
    }
    (quotient, rem)
}

/// Splits `amount` over `weights` in proportion, exactly, by the largest-remainder rule of the
/// [module documentation](self). Returns one share per weight (same order), summing to `amount`.
///
/// When every weight is zero (or there are none) nothing can be proportioned and every share
/// is zero; the caller keeps `amount` unallocated. Fails on negative inputs.
pub fn allocate_proportionally(amount: Money, weights: &[Money]) -> Result<Vec<Money>, AllocationError> {
    if amount.is_negative() {
        return Err(AllocationError::Negative { what: "the unattributed spend".into(), amount });
    }
    if let Some(w) = weights.iter().find(|w| w.is_negative()) {
        return Err(AllocationError::Negative { what: "an attributed spend".into(), amount: *w });
    }
    let total = Money::checked_sum(weights.iter().copied())?;
    if total == Money::ZERO {
        return Ok(vec![Money::ZERO; weights.len()]);
    }
    let (u, w_total) = (amount.picos().unsigned_abs(), total.picos().unsigned_abs());
    let mut shares = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    let mut given: u128 = 0;
    for (i, w) in weights.iter().enumerate() {
        let (q, r) = mul_div_rem(u, w.picos().unsigned_abs(), w_total);
        given += q;
        shares.push(q);
        remainders.push((r, i));
    }
    // Fewer than weights.len() pico-dollars are left; the largest remainders take one each.
    let left = u - given;
    remainders.sort_by(|(ra, ia), (rb, ib)| rb.cmp(ra).then(ia.cmp(ib)));
    for &(_, i) in remainders.iter().take(usize::try_from(left).unwrap_or(usize::MAX)) {
        shares[i] += 1;
    }
    // Every share is at most `amount`, which is an i128.
    Ok(shares.into_iter().map(|s| Money::from_picos(i128::try_from(s).unwrap_or(i128::MAX))).collect())
}

/// Rounds `values` to `digits` fractional digits (`<= 12`) so that the rounded values add up to
/// their exact sum rounded half-to-even: every value is first rounded down to the unit, then the
/// units left go one each to the largest remainders (ties: the earlier value). For printing
/// amounts (cents on an invoice) whose column must still add up to its printed total. Each
/// result is within one unit of its value.
pub fn round_preserving_sum(values: &[Money], digits: u32) -> Result<Vec<Money>, AllocationError> {
    let unit = 10i128.pow(crate::money::SCALE - digits.min(crate::money::SCALE));
    let target = Money::checked_sum(values.iter().copied())?.round_to(digits).picos();
    let mut floors = Vec::with_capacity(values.len());
    let mut remainders = Vec::with_capacity(values.len());
    let mut floor_sum: i128 = 0;
    for (i, v) in values.iter().enumerate() {
        let f = v.picos().div_euclid(unit) * unit;
        floor_sum = floor_sum.checked_add(f).ok_or(AllocationError::Overflow)?;
        floors.push(f);
        remainders.push((v.picos() - f, i));
    }
    // 0 <= left <= values.len(): the exact sum exceeds the floors by less than one unit per value.
    let left = (target - floor_sum) / unit;
    remainders.sort_by(|(ra, ia), (rb, ib)| rb.cmp(ra).then(ia.cmp(ib)));
    for &(_, i) in remainders.iter().take(usize::try_from(left).unwrap_or(0)) {
        floors[i] += unit;
    }
    Ok(floors.into_iter().map(Money::from_picos).collect())
}

/// Attributed spend of one chargeback line (a team, a project or a cost center).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributedSpend {
    /// The line's key (team, project or cost-center name).
    pub key: String,
    /// Requests charged directly to the line.
    pub requests: u64,
    /// Spend charged directly to the line.
    pub cost: Money,
}

/// One line of a [`Chargeback`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChargebackLine {
    /// Team, project or cost-center name.
    pub key: String,
    /// Requests charged directly to the line.
    pub requests: u64,
    /// Spend charged directly to the line.
    pub direct: Money,
    /// The line's share of the unattributed spend.
    pub allocated: Money,
    /// `direct + allocated`: what the line is charged.
    pub charged: Money,
}

/// A month's chargeback: attributed lines with their share of the unattributed spend.
///
/// Invariants (checked by [`Chargeback::build`]): `Σ direct + unattributed = total` and
/// `Σ charged + unallocated = total`, exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chargeback {
    /// Attributed lines in key order.
    pub lines: Vec<ChargebackLine>,
    /// Requests without attribution.
    pub unattributed_requests: u64,
    /// Spend without attribution (before allocation).
    pub unattributed: Money,
    /// The part of `unattributed` that could not be allocated (all of it when no line has
    /// attributed spend, else zero).
    pub unallocated: Money,
    /// Requests in total.
    pub total_requests: u64,
    /// Spend in total: the ledger's total.
    pub total: Money,
}

impl Chargeback {
    /// Allocates `unattributed` over `attributed` (lines merged by key and sorted by it).
    pub fn build(
        attributed: impl IntoIterator<Item = AttributedSpend>,
        unattributed_requests: u64,
        unattributed: Money,
    ) -> Result<Chargeback, AllocationError> {
        let mut merged: BTreeMap<String, (u64, Money)> = BTreeMap::new();
        for a in attributed {
            let e = merged.entry(a.key).or_insert((0, Money::ZERO));
            e.0 = e.0.saturating_add(a.requests);
            e.1 = e.1.checked_add(a.cost)?;
        }
        let weights: Vec<Money> = merged.values().map(|(_, c)| *c).collect();
        let shares = allocate_proportionally(unattributed, &weights)?;
        let allocated_sum = Money::checked_sum(shares.iter().copied())?;
        let unallocated = unattributed.checked_sub(allocated_sum)?;
        let mut lines = Vec::with_capacity(merged.len());
        for ((key, (requests, direct)), allocated) in merged.into_iter().zip(shares) {
            lines.push(ChargebackLine { key, requests, direct, allocated, charged: direct.checked_add(allocated)? });
        }
        let total = Money::checked_sum(weights.iter().copied())?.checked_add(unattributed)?;
        let total_requests = lines.iter().fold(unattributed_requests, |acc, l| acc.saturating_add(l.requests));
        Ok(Chargeback { lines, unattributed_requests, unattributed, unallocated, total_requests, total })
    }

    /// `Σ charged + unallocated`, which equals [`Chargeback::total`].
    pub fn charged_total(&self) -> Result<Money, AllocationError> {
        Ok(Money::checked_sum(self.lines.iter().map(|l| l.charged))?.checked_add(self.unallocated)?)
    }
}

/// Team → cost-center mapping, read from a TOML file such as `config/cost-centers.example.toml`:
///
/// ```toml
/// [teams]
/// search = "CC-1001"          # team "search" of every tenant
/// "acme/growth" = "CC-2001"   # team "growth" of tenant "acme" only (wins over "growth")
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostCenterMapping {
    /// `team` or `tenant/team` → cost center.
    #[serde(default)]
    pub teams: BTreeMap<String, String>,
}

impl CostCenterMapping {
    /// The cost center of `team` of `tenant`: a `tenant/team` entry first, then `team`.
    /// `None` for an empty team or an unmapped one (unattributed spend).
    pub fn cost_center(&self, tenant: &str, team: &str) -> Option<&str> {
        if team.is_empty() {
            return None;
        }
        self.teams.get(&format!("{tenant}/{team}")).or_else(|| self.teams.get(team)).map(String::as_str)
    }

    /// Problems that make the mapping unusable: empty team names or cost centers.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (team, cc) in &self.teams {
            if team.trim().is_empty() || team.ends_with('/') {
                out.push(format!("teams: the entry {team:?} names no team"));
            }
            if cc.trim().is_empty() {
                out.push(format!("teams.{team:?}: the cost center is empty"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(p: i128) -> Money {
        Money::from_picos(p)
    }

    #[test]
    fn wide_multiplication_is_exact() {
        assert_eq!(mul_div_rem(7, 3, 4), (5, 1));
        let big = i128::MAX.unsigned_abs();
        assert_eq!(mul_div_rem(big, big, big), (big, 0));
        assert_eq!(mul_div_rem(big, big - 1, big), (big - 1, 0));
        // Products beyond 128 bits: (3 * 2^100 + 5) * 2^110 / 2^111 = 3 * 2^99 + 2, remainder 2^110.
        assert_eq!(mul_div_rem(3 * (1 << 100) + 5, 1 << 110, 1 << 111), (3 * (1 << 99) + 2, 1 << 110));
        assert_eq!(mul_div_rem(1 << 100, 1 << 100, 1 << 101), (1 << 99, 0));
    }

    #[test]
    fn leftover_picos_go_to_the_largest_remainders() {
        // 10 picos over 1:1:1 -> 3.33 each: floors 3,3,3, one left, equal remainders: first wins.
        assert_eq!(allocate_proportionally(m(10), &[m(1), m(1), m(1)]).unwrap(), vec![m(4), m(3), m(3)]);
        // 10 over 1:2 -> 3.33, 6.67: floors 3, 6, remainders 1, 2: the second gets the pico.
        assert_eq!(allocate_proportionally(m(10), &[m(1), m(2)]).unwrap(), vec![m(3), m(7)]);
        assert_eq!(allocate_proportionally(m(0), &[m(1), m(2)]).unwrap(), vec![m(0), m(0)]);
        assert_eq!(allocate_proportionally(m(5), &[m(0), m(0)]).unwrap(), vec![m(0), m(0)]);
        assert_eq!(allocate_proportionally(m(5), &[]).unwrap(), Vec::<Money>::new());
        assert!(allocate_proportionally(m(-1), &[m(1)]).is_err());
        assert!(allocate_proportionally(m(1), &[m(1), m(-1)]).is_err());
    }

    #[test]
    fn huge_amounts_do_not_overflow() {
        let max = Money::from_picos(i128::MAX / 2);
        let shares = allocate_proportionally(max, &[max, m(1)]).unwrap();
        assert_eq!(Money::checked_sum(shares.iter().copied()).unwrap(), max);
        assert_eq!(shares[1], m(1));
    }

    #[test]
    fn chargeback_lines_add_up_and_merge_by_key() {
        let attributed = vec![
            AttributedSpend { key: "search".into(), requests: 2, cost: m(300) },
            AttributedSpend { key: "growth".into(), requests: 1, cost: m(100) },
            AttributedSpend { key: "search".into(), requests: 1, cost: m(300) },
        ];
        let c = Chargeback::build(attributed, 4, m(70)).unwrap();
        assert_eq!(c.lines.iter().map(|l| l.key.as_str()).collect::<Vec<_>>(), ["growth", "search"]);
        assert_eq!(c.lines[0].allocated, m(10));
        assert_eq!(c.lines[1].allocated, m(60));
        assert_eq!(c.lines[1].charged, m(660));
        assert_eq!(c.total, m(770));
        assert_eq!(c.total_requests, 8);
        assert_eq!(c.unallocated, Money::ZERO);
        assert_eq!(c.charged_total().unwrap(), c.total);

        let nobody = Chargeback::build(Vec::new(), 3, m(70)).unwrap();
        assert_eq!(nobody.unallocated, m(70));
        assert_eq!(nobody.charged_total().unwrap(), m(70));
    }

    #[test]
    fn cost_centers_prefer_the_tenant_specific_entry() {
        let mapping: CostCenterMapping = toml_mapping(
            r#"[teams]
search = "CC-1"
"acme/search" = "CC-2"
"#,
        );
        assert_eq!(mapping.cost_center("acme", "search"), Some("CC-2"));
        assert_eq!(mapping.cost_center("globex", "search"), Some("CC-1"));
        assert_eq!(mapping.cost_center("globex", "growth"), None);
        assert_eq!(mapping.cost_center("globex", ""), None);
        assert!(mapping.problems().is_empty());
        let bad = CostCenterMapping { teams: [("x".to_owned(), " ".to_owned())].into() };
        assert_eq!(bad.problems().len(), 1);
    }

    fn toml_mapping(text: &str) -> CostCenterMapping {
        // A tiny reader for the test: `key = "value"` lines under [teams].
        let mut teams = BTreeMap::new();
        for line in text.lines().skip(1) {
            let (k, v) = line.split_once('=').unwrap();
            teams.insert(k.trim().trim_matches('"').to_owned(), v.trim().trim_matches('"').to_owned());
        }
        CostCenterMapping { teams }
    }

    #[test]
    fn display_rounding_keeps_the_column_sum() {
        let cents = |v: &[i128]| -> Vec<i128> {
            let values: Vec<Money> = v.iter().map(|c| Money::from_picos(c * 10_000_000_000 / 10)).collect();
            round_preserving_sum(&values, 2).unwrap().iter().map(|m| m.picos() / 10_000_000_000).collect()
        };
        // 0.334 + 0.333 + 0.333 = 1.000: plain rounding prints 0.33 * 3 = 0.99.
        assert_eq!(cents(&[334, 333, 333]), vec![34, 33, 33]);
        assert_eq!(cents(&[5, 5]), vec![1, 0]);
        assert_eq!(cents(&[]), Vec::<i128>::new());
    }

    proptest! {
        #[test]
        fn display_rounding_sums_to_the_rounded_total(
            values in proptest::collection::vec(-1_000_000_000_000_000i128..1_000_000_000_000_000, 0..25),
            digits in 0u32..=12,
        ) {
            let values: Vec<Money> = values.into_iter().map(Money::from_picos).collect();
            let rounded = round_preserving_sum(&values, digits).unwrap();
            let unit = 10i128.pow(12 - digits);
            let total = Money::checked_sum(values.iter().copied()).unwrap().round_to(digits);
            prop_assert_eq!(Money::checked_sum(rounded.iter().copied()).unwrap(), total);
            for (r, v) in rounded.iter().zip(&values) {
                prop_assert_eq!(r.picos() % unit, 0);
                prop_assert!((r.picos() - v.picos()).abs() < unit);
            }
        }

        #[test]
        fn shares_sum_exactly_and_are_proportional_within_one_pico(
            amount in 0i128..1_000_000_000_000_000_000_000,
            weights in proptest::collection::vec(0i128..1_000_000_000_000_000_000, 0..20),
        ) {
            let weights: Vec<Money> = weights.into_iter().map(Money::from_picos).collect();
            let shares = allocate_proportionally(m(amount), &weights).unwrap();
            prop_assert_eq!(shares.len(), weights.len());
            let total_w: i128 = weights.iter().map(|w| w.picos()).sum();
            let sum: i128 = shares.iter().map(|s| s.picos()).sum();
            if total_w == 0 {
                prop_assert_eq!(sum, 0);
            } else {
                prop_assert_eq!(sum, amount);
                for (s, w) in shares.iter().zip(&weights) {
                    // |s - amount * w / W| < 1  <=>  |s * W - amount * w| < W, checked in 256 bits
                    // via the floor: s is floor(amount * w / W) or one more.
                    let (q, r) = mul_div_rem(amount.unsigned_abs(), w.picos().unsigned_abs(), total_w.unsigned_abs());
                    let s = s.picos().unsigned_abs();
                    prop_assert!(s == q || (s == q + 1 && r > 0), "share {} floor {} rem {}", s, q, r);
                    if w.picos() == 0 {
                        prop_assert_eq!(s, 0);
                    }
                }
                // More attributed spend never gets a smaller share.
                for i in 0..weights.len() {
                    for j in 0..weights.len() {
                        if weights[i] > weights[j] {
                            prop_assert!(shares[i] >= shares[j]);
                        }
                    }
                }
            }
        }

        #[test]
        fn chargeback_totals_equal_the_whole(
            lines in proptest::collection::vec((0usize..6, 0u64..100, 0i128..1_000_000_000_000_000), 0..30),
            unattributed in 0i128..1_000_000_000_000_000,
        ) {
            let attributed: Vec<AttributedSpend> = lines
                .iter()
                .map(|(k, r, c)| AttributedSpend { key: format!("team-{k}"), requests: *r, cost: m(*c) })
                .collect();
            let whole: i128 = lines.iter().map(|(_, _, c)| *c).sum::<i128>() + unattributed;
            let c = Chargeback::build(attributed, 1, m(unattributed)).unwrap();
            prop_assert_eq!(c.total, m(whole));
            prop_assert_eq!(c.charged_total().unwrap(), m(whole));
            let direct: i128 = c.lines.iter().map(|l| l.direct.picos()).sum::<i128>() + unattributed;
            prop_assert_eq!(direct, whole);
            for l in &c.lines {
                prop_assert_eq!(l.charged.picos(), l.direct.picos() + l.allocated.picos());
            }
        }
    }
}
