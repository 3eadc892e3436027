//! Terminal helpers of the `ledger` CLI's rendering: progress bars for long topic reads,
//! tables, and confirmation prompts.

use std::io::{BufRead, IsTerminal, Write};

use crate::OpsError;

/// A progress bar on stderr for reads of a topic: drawn once there are more than
/// 10,000 records to read (indicatif draws only on a terminal).
#[derive(Debug)]
pub struct ReadProgress {
    bar: indicatif::ProgressBar,
    started: std::sync::OnceLock<()>,
}

/// Records above which a read shows its progress.
const PROGRESS_THRESHOLD: u64 = 10_000;

/// A hidden bar that appears on the first [`ReadProgress::show`] of a long read.
pub fn progress_bar(message: &str) -> ReadProgress {
    let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::hidden());
    bar.set_message(message.to_owned());
    ReadProgress { bar, started: std::sync::OnceLock::new() }
}

impl ReadProgress {
    /// `n` of `total` records read.
    pub fn show(&self, n: u64, total: u64) {
        if total <= PROGRESS_THRESHOLD {
            return;
        }
        self.started.get_or_init(|| {
            self.bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            self.bar.set_length(total);
            self.bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        });
        self.bar.set_position(n);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Asks `question` on the terminal (y/N); refuses when stdin is not one, so that a scripted
/// run must say `--yes` explicitly.
pub fn confirm(question: &str) -> Result<bool, OpsError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(OpsError::Invalid(
            "refusing to replay without confirmation: stdin is not a terminal. Pass --yes to replay, \
             or --dry-run to only see the plan"
                .to_owned(),
        ));
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stderr()
        .flush()
        .and_then(|()| stdin.lock().read_line(&mut answer))
        .map_err(|e| OpsError::Invalid(format!("reading the answer: {e}")))?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}
