//! Exact money, CSV fields and tables as text, and CSV read back.

use ledger_core::Money;

/// `m` rounded half-to-even to `digits` fractional digits, printed with exactly that many.
pub fn fmt_money(m: Money, digits: u32) -> String {
    let s = m.round_to(digits).to_string(); // always 12 fractional digits
    let cut = 12 - digits.min(12) as usize + usize::from(digits == 0);
    s[..s.len() - cut].to_owned()
}

/// A text table of `rows` under `header` (the CLI's table style), after `title` and a line
/// break when the title is not empty.
pub fn titled_table(title: &str, header: &[&str], rows: &[Vec<String>]) -> String {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(header.to_vec());
    for r in rows {
        table.add_row(r.clone());
    }
    if title.is_empty() {
        format!("{table}\n")
    } else {
        format!("{title}\n{table}\n")
    }
}

/// A CSV field, quoted when it holds a separator, a quote or a line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// `s` cut to at most `max` characters, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Parses CSV (RFC 4180: `,` separated, `"` quoted with `""` for a quote, `\n` or `\r\n` line
/// ends) into rows of fields. Blank lines are skipped.
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let (mut row, mut field) = (Vec::new(), String::new());
    let (mut quoted, mut was_quoted) = (false, false);
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                line += usize::from(c == '\n');
                field.push(c);
            }
            (false, '"') if field.is_empty() && !was_quoted => (quoted, was_quoted) = (true, true),
            (false, '"') => return Err(format!("line {line}: a quote inside an unquoted field")),
            (false, ',') => {
                row.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                if row.len() > 1 || !row[0].is_empty() || was_quoted {
                    rows.push(std::mem::take(&mut row));
                }
                row.clear();
                was_quoted = false;
                line += 1;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(format!("line {line}: a quoted field is not closed"));
    }
    if !field.is_empty() || !row.is_empty() || was_quoted {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

/// `ledger budgets status` for people: one row per budget, and where the figures come from.
pub fn budget_status_text(rows: &[ledger_enforcer::status::BudgetStatus], now: chrono::DateTime<chrono::Utc>) -> String {
    use ledger_enforcer::status::BudgetStatus;
    if rows.is_empty() {
        return "no budgets in the budgets file\n".into();
    }
    let right: Vec<usize> = (0..BudgetStatus::NUMERIC.len()).filter(|&i| BudgetStatus::NUMERIC[i]).collect();
    let cells = rows.iter().map(|r| r.cells(now).to_vec()).collect();
    format!(
        "{}\nstate, burn rate and exhaustion come from the enforcer's last signal; forecast = spend at the period's average \
         rate so far\nlease budgets: leases active (held) / closed, not yet settled (used); worst case = limit - spend - both\n",
        table(&BudgetStatus::COLUMNS, cells, &right)
    )
}

/// A table of `rows` under `header` for a terminal, the columns `right` aligned right.
pub fn table(header: &[&str], rows: Vec<Vec<String>>, right: &[usize]) -> comfy_table::Table {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_rounded_half_even_for_display() {
        let m: Money = "1.0000005".parse().unwrap();
        assert_eq!(fmt_money(m, 6), "1.000000");
        let m: Money = "1.0000015".parse().unwrap();
        assert_eq!(fmt_money(m, 6), "1.000002");
        assert_eq!(fmt_money("2.5".parse().unwrap(), 0), "2");
        assert_eq!(fmt_money("0.123456789012".parse().unwrap(), 12), "0.123456789012");
    }

    #[test]
    fn csv_quotes_when_needed() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }

    #[test]
    fn csv_parses_back_what_csv_field_writes() {
        let text = format!("a,b,c\r\n{},,\"x\"\n\n{},2,3", csv_field("say \"hi\", then\nbye"), csv_field("{\"k\":\"v\"}"));
        let rows = parse_csv(&text).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1], vec!["say \"hi\", then\nbye".to_owned(), String::new(), "x".to_owned()]);
        assert_eq!(rows[2][0], "{\"k\":\"v\"}");
        assert!(parse_csv("a,\"b").is_err());
        assert!(parse_csv("a,b\"c").is_err());
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("éèà", 3), "éèà");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
