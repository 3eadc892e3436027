//! Producer SDK for services that emit LLM usage events.
