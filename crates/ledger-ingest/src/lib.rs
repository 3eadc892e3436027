//! HTTP ingest: `POST /v1/usage` validates usage events, writes them to Kafka and answers 202
//! only once Kafka acknowledged every event.

pub mod config;
