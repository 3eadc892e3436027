//! Kafka adapters of the LLM usage ledger: consumer loop with offset handling, backpressured producer.
