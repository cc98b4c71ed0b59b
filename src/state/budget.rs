//! Budget periods: UTC days and ISO weeks (Monday 00:00 UTC), named so two
//! processes agree on the counter to use and a new period starts at zero
//! without anything being reset.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
}

impl Period {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            _ => None,
        }
    }

    /// The period containing `now` (Unix seconds): its name and its end.
    pub fn at(self, now: f64) -> (String, f64) {
        let day = (now / 86_400.0).floor() as i64;
        match self {
            Period::Day => {
                let (y, m, d) = civil(day);
                (
                    format!("day:{y:04}-{m:02}-{d:02}"),
                    ((day + 1) * 86_400) as f64,
                )
            }
            Period::Week => {
                // 1970-01-01 was a Thursday: Monday-based weekday 3.
                let weekday = (day + 3).rem_euclid(7);
                let monday = day - weekday;
                let thursday = monday + 3;
                let (y, _, _) = civil(thursday);
                let jan1 = days_from_civil(y, 1, 1);
                let week = (thursday - jan1) / 7 + 1;
                (
                    format!("week:{y:04}-W{week:02}"),
                    ((monday + 7) * 86_400) as f64,
                )
            }
        }
    }
}

/// When the period named `name` (as [`Period::at`] names it) ends; None for
/// a name gavel does not make (such rows are left alone).
pub fn period_end(name: &str) -> Option<f64> {
    if let Some(date) = name.strip_prefix("day:") {
        let mut it = date.splitn(3, '-');
        let y: i64 = it.next()?.parse().ok()?;
        let m: u32 = it.next()?.parse().ok()?;
        let d: u32 = it.next()?.parse().ok()?;
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return None;
        }
        return Some(((days_from_civil(y, m, d) + 1) * 86_400) as f64);
    }
    let (y, w) = name.strip_prefix("week:")?.split_once("-W")?;
    let (y, w): (i64, i64) = (y.parse().ok()?, w.parse().ok()?);
    if !(1..=53).contains(&w) {
        return None;
    }
    // ISO week 1 is the week with January 4th.
    let jan4 = days_from_civil(y, 1, 4);
    let monday1 = jan4 - (jan4 + 3).rem_euclid(7);
    Some(((monday1 + 7 * w) * 86_400) as f64)
}

/// Days since the epoch → (year, month, day), proleptic Gregorian.
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> f64 {
        humantime::parse_rfc3339(s)
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    }

    #[test]
    fn utc_days_and_iso_weeks() {
        let (name, end) = Period::Day.at(at("2026-11-22T23:59:59Z"));
        assert_eq!(name, "day:2026-11-22");
        assert_eq!(end, at("2026-11-23T00:00:00Z"));
        // 2026-11-22 is a Sunday: ISO week 47, ending Monday 23rd.
        let (name, end) = Period::Week.at(at("2026-11-22T12:00:00Z"));
        assert_eq!(name, "week:2026-W47");
        assert_eq!(end, at("2026-11-23T00:00:00Z"));
        // ISO years: 2026-12-31 (Thu) is 2026-W53; 2027-01-03 (Sun) too;
        // 2024-12-30 (Mon) is 2025-W01.
        assert_eq!(
            Period::Week.at(at("2026-12-31T00:00:00Z")).0,
            "week:2026-W53"
        );
        assert_eq!(
            Period::Week.at(at("2027-01-03T10:00:00Z")).0,
            "week:2026-W53"
        );
        assert_eq!(
            Period::Week.at(at("2024-12-30T00:00:00Z")).0,
            "week:2025-W01"
        );
        assert_eq!(
            Period::Day.at(at("2024-02-29T10:00:00Z")).0,
            "day:2024-02-29"
        );
        // A period's name gives back its end (pruning reads names).
        for t in [
            "2026-11-22T23:59:59Z",
            "2026-12-31T00:00:00Z",
            "2027-01-03T10:00:00Z",
            "2024-12-30T00:00:00Z",
            "2024-02-29T10:00:00Z",
        ] {
            for p in [Period::Day, Period::Week] {
                let (name, end) = p.at(at(t));
                assert_eq!(period_end(&name), Some(end), "{name}");
            }
        }
        assert_eq!(period_end("month:2026-11"), None);
        assert_eq!(period_end("day:2026-13-01"), None);
        assert_eq!(period_end("week:2026-W99"), None);
    }
}
