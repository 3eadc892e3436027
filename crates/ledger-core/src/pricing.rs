//! The pricing formula of PRICING.md.
