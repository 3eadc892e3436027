//! One module per subcommand; each has its clap `Args` and an async `run`.

pub(crate) mod bench;
pub(crate) mod budgets;
pub(crate) mod dlq;
pub(crate) mod enforce;
pub(crate) mod ingest;
pub(crate) mod migrate;
pub(crate) mod price;
pub(crate) mod prices;
pub(crate) mod process;
pub(crate) mod produce;
pub(crate) mod reconcile;
pub(crate) mod router;
pub(crate) mod report;
pub(crate) mod stack;

/// `error` with a hint of what to check as context, unless the error names a wrong setting
/// itself (then a hint that a service may not be running would mislead).
pub(crate) fn hinted<E: std::error::Error + Send + Sync + 'static>(error: E, is_settings: bool, hint: &str) -> anyhow::Error {
    if is_settings {
        anyhow::Error::new(error)
    } else {
        anyhow::Error::new(error).context(hint.to_owned())
    }
}

/// A progress bar on stderr for reads of a topic: drawn once there are more than
/// [`PROGRESS_THRESHOLD`] records to read (indicatif draws only on a terminal).
pub(crate) struct ReadProgress {
    bar: indicatif::ProgressBar,
    started: std::sync::OnceLock<()>,
}

/// Records above which a read shows its progress.
const PROGRESS_THRESHOLD: u64 = 10_000;

/// A hidden bar that appears on the first [`ReadProgress::show`] of a long read.
pub(crate) fn progress_bar(message: &str) -> ReadProgress {
    let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::hidden());
    bar.set_message(message.to_owned());
    ReadProgress { bar, started: std::sync::OnceLock::new() }
}

impl ReadProgress {
    /// `n` of `total` records read.
    pub(crate) fn show(&self, n: u64, total: u64) {
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
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// A table of `rows` under `header`, the columns `right` aligned right.
pub(crate) fn table(header: &[&str], rows: Vec<Vec<String>>, right: &[usize]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(header.to_vec());
    for r in rows {
        table.add_row(r.into_iter().enumerate().map(|(i, c)| {
            let cell = comfy_table::Cell::new(c);
            if right.contains(&i) {
                cell.set_alignment(comfy_table::CellAlignment::Right)
            } else {
                cell
            }
        }));
    }
    table
}
