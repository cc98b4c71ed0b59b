//! Budget periods: UTC days and ISO weeks (Monday 00:00 UTC) unless
//! `[budget] utc_offset` / `week_starts` say otherwise, named so two
//! processes agree on the counter to use and a new period starts at zero
//! without anything being reset.
//!
//! Names: `day:2026-12-03`, `week:2026-W49` (ISO) for the default calendar —
//! the names gavel has always used; with an offset `@+05:30` is appended;
//! a week that does not start on Monday is named by its first day,
//! `week:2026-11-29/sun`. Every name carries what [`period_end`] needs, so
//! pruning works for rows of any calendar.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
}

/// Where budget days and weeks begin: a fixed offset from UTC (no daylight
/// saving: a budget period is never 23 or 25 hours) and the first day of
/// the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Calendar {
    /// Seconds east of UTC, within ±14 h.
    pub utc_offset_s: i64,
    /// 0 = Monday … 6 = Sunday.
    pub week_start: u8,
}

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

impl Calendar {
    /// `"+05:30"`, `"-08:00"`, `"Z"` → seconds east of UTC.
    pub fn parse_offset(s: &str) -> Option<i64> {
        if s == "Z" {
            return Some(0);
        }
        let (sign, rest) = match s.as_bytes().first()? {
            b'+' => (1, &s[1..]),
            b'-' => (-1, &s[1..]),
            _ => return None,
        };
        let (h, m) = rest.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        let total = h * 3600 + m * 60;
        (m < 60 && total <= 14 * 3600).then_some(sign * total)
    }

    /// `"monday"` … `"sunday"` → 0 … 6.
    pub fn parse_weekday(s: &str) -> Option<u8> {
        WEEKDAYS.iter().position(|d| *d == s).map(|i| i as u8)
    }

    pub fn offset_text(&self) -> String {
        let a = self.utc_offset_s.abs();
        format!(
            "{}{:02}:{:02}",
            if self.utc_offset_s < 0 { '-' } else { '+' },
            a / 3600,
            a % 3600 / 60
        )
    }

    pub fn week_start_name(&self) -> &'static str {
        WEEKDAYS[self.week_start as usize % 7]
    }

    fn suffix(&self) -> String {
        if self.utc_offset_s == 0 {
            String::new()
        } else {
            format!("@{}", self.offset_text())
        }
    }
}

impl Period {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            _ => None,
        }
    }

    /// The UTC period containing `now` (Unix seconds): its name and its end.
    pub fn at(self, now: f64) -> (String, f64) {
        self.at_in(now, &Calendar::default())
    }

    /// The period of calendar `cal` containing `now`: its name and its end
    /// (Unix seconds).
    pub fn at_in(self, now: f64, cal: &Calendar) -> (String, f64) {
        let off = cal.utc_offset_s;
        let day = ((now + off as f64) / 86_400.0).floor() as i64;
        let end = |local_day: i64| (local_day * 86_400 - off) as f64;
        match self {
            Period::Day => {
                let (y, m, d) = civil(day);
                (
                    format!("day:{y:04}-{m:02}-{d:02}{}", cal.suffix()),
                    end(day + 1),
                )
            }
            Period::Week => {
                // 1970-01-01 was a Thursday: Monday-based weekday 3.
                let weekday = (day + 3).rem_euclid(7);
                let first = day - (weekday - cal.week_start as i64).rem_euclid(7);
                let name = if cal.week_start == 0 {
                    let thursday = first + 3;
                    let (y, _, _) = civil(thursday);
                    let jan1 = days_from_civil(y, 1, 1);
                    let week = (thursday - jan1) / 7 + 1;
                    format!("week:{y:04}-W{week:02}{}", cal.suffix())
                } else {
                    let (y, m, d) = civil(first);
                    format!(
                        "week:{y:04}-{m:02}-{d:02}/{}{}",
                        &cal.week_start_name()[..3],
                        cal.suffix()
                    )
                };
                (name, end(first + 7))
            }
        }
    }
}

/// `Y-M-D` → days since the epoch.
fn parse_date(date: &str) -> Option<i64> {
    let mut it = date.splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// When the period named `name` (as [`Period::at_in`] names it) ends; None
/// for a name gavel does not make (such rows are left alone).
pub fn period_end(name: &str) -> Option<f64> {
    let (base, off) = match name.split_once('@') {
        Some((b, o)) => (b, Calendar::parse_offset(o)?),
        None => (name, 0),
    };
    let local_end = if let Some(date) = base.strip_prefix("day:") {
        parse_date(date)? + 1
    } else {
        let week = base.strip_prefix("week:")?;
        if let Some((date, day)) = week.split_once('/') {
            let first = parse_date(date)?;
            // The name's weekday must be the first day's own.
            let start = WEEKDAYS
                .iter()
                .position(|d| d.starts_with(day) && day.len() == 3)?;
            if (first + 3).rem_euclid(7) != start as i64 {
                return None;
            }
            first + 7
        } else {
            let (y, w) = week.split_once("-W")?;
            let (y, w): (i64, i64) = (y.parse().ok()?, w.parse().ok()?);
            if !(1..=53).contains(&w) {
                return None;
            }
            // ISO week 1 is the week with January 4th.
            let jan4 = days_from_civil(y, 1, 4);
            let monday1 = jan4 - (jan4 + 3).rem_euclid(7);
            monday1 + 7 * w
        }
    };
    Some((local_end * 86_400 - off) as f64)
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

    /// An RFC 3339 instant as Unix seconds.
    pub(super) fn at(s: &str) -> f64 {
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

#[cfg(test)]
mod calendar_tests {
    use super::tests::at;
    use super::*;

    fn cal(offset: &str, week_starts: &str) -> Calendar {
        Calendar {
            utc_offset_s: Calendar::parse_offset(offset).unwrap(),
            week_start: Calendar::parse_weekday(week_starts).unwrap(),
        }
    }

    #[test]
    fn days_and_weeks_begin_where_the_calendar_says() {
        // 2026-12-02T20:00Z is already Thursday the 3rd at +05:30.
        let india = cal("+05:30", "monday");
        let (name, end) = Period::Day.at_in(at("2026-12-02T20:00:00Z"), &india);
        assert_eq!(name, "day:2026-12-03@+05:30");
        assert_eq!(end, at("2026-12-03T18:30:00Z"), "local midnight");
        // …and still Wednesday the 2nd at -08:00 (UTC Thursday 03:00).
        let pacific = cal("-08:00", "sunday");
        let (name, end) = Period::Day.at_in(at("2026-12-03T03:00:00Z"), &pacific);
        assert_eq!(name, "day:2026-12-02@-08:00");
        assert_eq!(end, at("2026-12-03T08:00:00Z"));
        // Weeks from Sunday: Thursday 2026-12-03 is in the week of Sunday
        // 2026-11-29, which ends at local midnight before Sunday 12-06.
        let (name, end) = Period::Week.at_in(at("2026-12-03T12:00:00Z"), &pacific);
        assert_eq!(name, "week:2026-11-29/sun@-08:00");
        assert_eq!(end, at("2026-12-06T08:00:00Z"));
        // A Sunday starts its own week.
        let (name, _) = Period::Week.at_in(at("2026-12-06T12:00:00Z"), &pacific);
        assert_eq!(name, "week:2026-12-06/sun@-08:00");
        // ISO week numbers stay for Monday weeks, with the offset.
        let (name, end) = Period::Week.at_in(at("2026-12-02T20:00:00Z"), &india);
        assert_eq!(name, "week:2026-W49@+05:30");
        assert_eq!(end, at("2026-12-06T18:30:00Z"));
        // The default calendar keeps the names gavel always used.
        assert_eq!(
            Period::Day.at_in(at("2026-12-03T12:00:00Z"), &Calendar::default()),
            Period::Day.at(at("2026-12-03T12:00:00Z"))
        );
    }

    #[test]
    fn every_calendars_names_give_back_their_end() {
        for c in [
            cal("Z", "monday"),
            cal("+05:30", "monday"),
            cal("-08:00", "sunday"),
            cal("+14:00", "saturday"),
            cal("-12:00", "wednesday"),
        ] {
            for t in 0..60 {
                let now = at("2026-12-24T00:00:00Z") + t as f64 * 37_129.0;
                for p in [Period::Day, Period::Week] {
                    let (name, end) = p.at_in(now, &c);
                    assert!(end > now, "{name}");
                    assert_eq!(period_end(&name), Some(end), "{name}");
                }
            }
        }
        assert_eq!(
            period_end("week:2026-11-30/sun"),
            None,
            "a Monday is no Sunday"
        );
        assert_eq!(period_end("day:2026-12-03@+99:00"), None);
    }

    #[test]
    fn offsets_and_weekdays_parse_strictly() {
        assert_eq!(Calendar::parse_offset("+05:30"), Some(19_800));
        assert_eq!(Calendar::parse_offset("-08:00"), Some(-28_800));
        assert_eq!(Calendar::parse_offset("Z"), Some(0));
        for bad in ["5", "+5:30", "+05:60", "+15:00", "05:00", "", "+05:30:00"] {
            assert_eq!(Calendar::parse_offset(bad), None, "{bad}");
        }
        assert_eq!(Calendar::parse_weekday("sunday"), Some(6));
        assert_eq!(Calendar::parse_weekday("Sunday"), None);
        assert_eq!(cal("-08:00", "sunday").offset_text(), "-08:00");
    }
}
