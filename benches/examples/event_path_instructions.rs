//! Runs the event-path benchmark's code (`ledger_benches::event_path`) a fixed number of times,
//! so an instruction counter sees exactly it; the count per event does not drift with the
//! machine's speed, unlike the benchmark's time. For example:
//!
//! ```text
//! cargo build --release -p ledger-benches --example event_path_instructions
//! valgrind --tool=callgrind --toggle-collect='ledger_benches::event_path' \
//!     target/release/examples/event_path_instructions 3
//! ```
//! (instructions "I refs" / (3 + 1 warm-up round) / 10,000 events). Without valgrind it prints
//! the time per event of the rounds after the first.

use ledger_core::aggregate::SpendAggregator;
use ledger_core::UsageEvent;
use ledger_schema::Codec;

/// The `ledger` binary's allocator, so the numbers are the processor's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 10_000;

fn main() {
    let rounds: u32 = match std::env::args().nth(1).map(|s| s.parse()) {
        None => 20,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: event_path_instructions [ROUNDS > 0]");
            std::process::exit(2);
        }
    };
    let codec = Codec::<UsageEvent>::new().expect("codec");
    // `EVENT_PATH_CATALOG=small`: the earlier 65-model catalog instead of the shipped one
    let catalog = match std::env::var("EVENT_PATH_CATALOG").as_deref() {
        Ok("small") => ledger_benches::small_catalog(),
        _ => ledger_benches::repo_catalog(),
    };
    let messages = ledger_benches::encoded_events(&codec, EVENTS);
    let mut spend = SpendAggregator::new();
    ledger_benches::event_path(&codec, &catalog, &messages, &mut spend);
    let started = std::time::Instant::now();
    for _ in 0..rounds {
        ledger_benches::event_path(&codec, &catalog, &messages, &mut spend);
    }
    let nanos = started.elapsed().as_nanos() / (u128::from(rounds) * EVENTS as u128);
    println!("{rounds} rounds of {EVENTS} events: {nanos} ns per event");
}
