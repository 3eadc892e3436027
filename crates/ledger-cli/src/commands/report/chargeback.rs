//! `ledger report chargeback`: a month's spend charged to teams, projects or cost centers
//! ([`ledger_ops::chargeback`]), rendered as a table, CSV or JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use ledger_core::chargeback::CostCenterMapping;
use ledger_ops::chargeback::{ChargeBy, ChargebackRequest};

use super::Format;
use crate::commands::migrate::ClickHouseArgs;

/// What a chargeback line is (the command line's names of [`ChargeBy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum ChargeByArg {
    /// One line per team (events without a team are unattributed).
    Team,
    /// One line per project (events without a project are unattributed).
    Project,
    /// One line per cost center of the --mapping file (no team or an unmapped team: unattributed).
    CostCenter,
}

impl From<ChargeByArg> for ChargeBy {
    fn from(a: ChargeByArg) -> ChargeBy {
        match a {
            ChargeByArg::Team => ChargeBy::Team,
            ChargeByArg::Project => ChargeBy::Project,
            ChargeByArg::CostCenter => ChargeBy::CostCenter,
        }
    }
}

/// Arguments of `ledger report chargeback`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ledger report chargeback --month 2026-11
  ledger report chargeback --month 2026-11 --by cost-center --mapping config/cost-centers.example.toml
  ledger report chargeback --month 2026-11 --by project --format csv > chargeback-2026-11.csv
  ledger report chargeback --month 2026-11 --tenant acme --format json

The month is by event time, UTC, read from usage_ledger itself. Spend without a team (or
project), and with --by cost-center spend of a team the mapping does not list, is unattributed:
it is shown as its own line and allocated to the other lines in proportion to their attributed
spend (largest remainder at the pico-dollar), so the charged column adds up exactly to the
ledger's total for the month. CSV and JSON carry exact 12-digit amounts; the table rounds for
display (--decimals) and prints the exact total. --format focus writes the month as FOCUS 1.2
rows (as `ledger export focus`; --by does not apply, --mapping adds a cost_center tag).")]
pub(crate) struct ChargebackArgs {
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    /// The month to charge back, YYYY-MM (event time, UTC).
    #[arg(long, value_name = "YYYY-MM")]
    month: String,
    /// What a line is.
    #[arg(long, value_enum, default_value_t = ChargeByArg::Team)]
    by: ChargeByArg,
    /// TOML file mapping teams to cost centers (a `[teams]` table: team = "CC", "tenant/team" = "CC");
    /// required by --by cost-center.
    #[arg(long, value_name = "FILE")]
    mapping: Option<PathBuf>,
    /// Only this tenant's spend.
    #[arg(long, value_name = "TENANT")]
    tenant: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Fractional digits of amounts in the table (rounded half-to-even; CSV and JSON are exact).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=12))]
    decimals: u32,
}

pub(super) async fn run(args: ChargebackArgs) -> anyhow::Result<ExitCode> {
    let by = ChargeBy::from(args.by);
    let mapping = match (&args.mapping, by) {
        (Some(path), _) => ledger_ops::chargeback::load_mapping(path)?,
        (None, ChargeBy::CostCenter) => anyhow::bail!(
            "--by cost-center needs --mapping FILE: a TOML file assigning teams to cost centers \
             (copy config/cost-centers.example.toml)"
        ),
        (None, _) => CostCenterMapping::default(),
    };
    let config = args.clickhouse.config()?;
    let request = ChargebackRequest { month: &args.month, by, mapping, tenant: args.tenant.as_deref() };
    let report = || ledger_ops::chargeback::chargeback(&config, &request);
    match args.format {
        Format::Focus => {
            let mapping = args.mapping.is_some().then(|| request.mapping.clone());
            let export = ledger_ops::focus::export(&config, &args.month, request.tenant, mapping).await?;
            print!("{}", export.to_csv());
            eprintln!("{}", export.summary()?);
        }
        Format::Csv => print!("{}", report().await?.to_csv()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report().await?.to_json())?),
        Format::Table => print!("{}", report().await?.to_text(args.decimals)?),
    }
    Ok(ExitCode::SUCCESS)
}
