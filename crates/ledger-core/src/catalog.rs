//! Price catalog: LiteLLM-format sources with an `effective_from` instant (see PRICING.md).
