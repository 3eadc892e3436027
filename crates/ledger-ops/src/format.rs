//! Exact money and CSV fields as text.

use ledger_core::Money;

/// `m` rounded half-to-even to `digits` fractional digits, printed with exactly that many.
pub fn fmt_money(m: Money, digits: u32) -> String {
    let s = m.round_to(digits).to_string(); // always 12 fractional digits
    let cut = 12 - digits.min(12) as usize + usize::from(digits == 0);
    s[..s.len() - cut].to_owned()
}

/// A text table of `rows` under `header` (the CLI's table style), after `title` and a line
/// break when the title is not empty.
pub fn table(title: &str, header: &[&str], rows: &[Vec<String>]) -> String {
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
    fn truncation_counts_characters() {
        assert_eq!(truncate("éèà", 3), "éèà");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
