//! Emit the usage of a few LLM calls with the SDK.
//!
//! ```text
//! cargo run -p ledger-sdk --example emit -- 127.0.0.1:9092 llm.usage.v1
//! ledger process --until-drained && ledger report spend
//! ```
//!
//! In a service: build one `Emitter` at startup, share it (it is `Sync`), call `emit` after
//! each LLM call with the provider's `usage` object, and `shutdown` before exiting.

use std::time::Duration;

use ledger_sdk::{
    AnthropicUsage, BedrockUsage, Emitter, EmitterConfig, EventBuilder, GeminiUsage, KafkaConfig, OpenAiUsage, OverflowPolicy,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let brokers = args.next().unwrap_or_else(|| "127.0.0.1:9092".to_owned());
    let topic = args.next().unwrap_or_else(|| "llm.usage.v1".to_owned());

    let emitter = Emitter::with_failure_handler(
        EmitterConfig {
            kafka: KafkaConfig { brokers, ..KafkaConfig::default() },
            topic,
            queue_capacity: 100_000,
            // Never slow the LLM call: refuse (and count) events when the queue is full.
            overflow: OverflowPolicy::DropNewest,
            ..EmitterConfig::default()
        },
        // Called for every accepted event that did not reach Kafka; resending it is safe.
        |failure| eprintln!("usage event {} not delivered: {:?}", failure.event_id, failure.reason),
    )?;

    // OpenAI chat completion: `usage` is inclusive (cached and reasoning tokens are parts).
    let openai = EventBuilder::openai(
        "o4-mini",
        OpenAiUsage { prompt_tokens: 1_200, completion_tokens: 800, cached_tokens: 1_024, reasoning_tokens: 512 },
    )
    .tenant("acme")
    .team("search")
    .feature("answer")
    .response_id("chatcmpl-123")
    .build()?;

    // Anthropic: cache reads and writes are reported beside input_tokens; the SDK adds them.
    let anthropic = EventBuilder::anthropic(
        "claude-sonnet-4-5",
        AnthropicUsage {
            input_tokens: 40,
            output_tokens: 350,
            cache_read_input_tokens: 12_000,
            cache_creation_input_tokens: 2_000,
            cache_creation_1h_input_tokens: 0,
        },
    )
    .tenant("acme")
    .team("support")
    .build()?;

    // Gemini: thoughts are reported beside the candidates; the SDK adds them to the output.
    let gemini = EventBuilder::gemini(
        "gemini-2.5-flash",
        GeminiUsage {
            prompt_token_count: 3_000,
            candidates_token_count: 200,
            cached_content_token_count: 2_048,
            thoughts_token_count: 600,
            tool_use_prompt_token_count: 0,
        },
    )
    .tenant("globex")
    .build()?;

    // Bedrock Converse, after a router sent the call to a cheaper model.
    let bedrock = EventBuilder::bedrock(
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        BedrockUsage { input_tokens: 500, output_tokens: 120, cache_read_input_tokens: 0, cache_write_input_tokens: 0 },
    )
    .tenant("globex")
    .routed_from_model("claude-sonnet-4-5")
    .build()?;

    for event in [openai, anthropic, gemini, bedrock] {
        println!("emit {} {} in={} out={}", event.event_id, event.request_model, event.input_tokens, event.output_tokens);
        emitter.emit(event)?;
    }
    let metrics = emitter.shutdown(Duration::from_secs(10))?;
    println!("delivered {} of {} events", metrics.delivered, metrics.accepted);
    Ok(())
}
