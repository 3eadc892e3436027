//! The six token classes a ledger row is charged for, one per cost term of docs/pricing.md
//! ("The formula", step 3): what finance reports (FOCUS `SkuMeter`) and provider exports are
//! compared by.

use std::fmt;

/// A billed token class. The classes partition a call's tokens: uncached input, cache reads,
/// 5 minute and 1 hour cache writes (together the inclusive `input_tokens`), non-reasoning
/// output and reasoning (together the inclusive `output_tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TokenClass {
    /// Input tokens not served from or written to a cache (`input_cost_usd`).
    Input,
    /// Input tokens read from a prompt cache (`cache_read_cost_usd`).
    CacheRead,
    /// Input tokens written to a cache with the default 5 minute lifetime (`cache_write_cost_usd`).
    CacheWrite,
    /// Input tokens written to a cache with a 1 hour lifetime (`cache_write_1h_cost_usd`).
    CacheWrite1h,
    /// Output tokens that are not reasoning (`output_cost_usd`).
    Output,
    /// Reasoning output tokens (`reasoning_cost_usd`).
    Reasoning,
}

impl TokenClass {
    /// Every class, in the order of the cost terms.
    pub const ALL: [TokenClass; 6] = [
        TokenClass::Input,
        TokenClass::CacheRead,
        TokenClass::CacheWrite,
        TokenClass::CacheWrite1h,
        TokenClass::Output,
        TokenClass::Reasoning,
    ];

    /// The machine name: `input`, `cache_read`, `cache_write`, `cache_write_1h`, `output`,
    /// `reasoning`.
    pub const fn name(self) -> &'static str {
        match self {
            TokenClass::Input => "input",
            TokenClass::CacheRead => "cache_read",
            TokenClass::CacheWrite => "cache_write",
            TokenClass::CacheWrite1h => "cache_write_1h",
            TokenClass::Output => "output",
            TokenClass::Reasoning => "reasoning",
        }
    }

    /// Parses [`TokenClass::name`].
    pub fn parse(s: &str) -> Option<TokenClass> {
        TokenClass::ALL.into_iter().find(|c| c.name() == s)
    }

    /// The FOCUS `SkuMeter` of the class, e.g. `Cache Read Input Tokens`.
    pub const fn meter(self) -> &'static str {
        match self {
            TokenClass::Input => "Input Tokens",
            TokenClass::CacheRead => "Cache Read Input Tokens",
            TokenClass::CacheWrite => "Cache Write Input Tokens (5 min)",
            TokenClass::CacheWrite1h => "Cache Write Input Tokens (1 h)",
            TokenClass::Output => "Output Tokens",
            TokenClass::Reasoning => "Reasoning Output Tokens",
        }
    }

    /// Position in [`TokenClass::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// True for the four classes that make up `input_tokens`.
    pub const fn is_input(self) -> bool {
        matches!(self, TokenClass::Input | TokenClass::CacheRead | TokenClass::CacheWrite | TokenClass::CacheWrite1h)
    }
}

impl fmt::Display for TokenClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_cost_term_order() {
        for (i, c) in TokenClass::ALL.into_iter().enumerate() {
            assert_eq!(TokenClass::parse(c.name()), Some(c));
            assert_eq!(c.index(), i);
        }
        assert_eq!(TokenClass::ALL.iter().filter(|c| c.is_input()).count(), 4);
        assert_eq!(TokenClass::parse("cached"), None);
    }
}
