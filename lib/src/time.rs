//! Timestamps: a fast path for CloudTrail's `YYYY-MM-DDTHH:MM:SSZ`, RFC 3339 otherwise.

/// Microseconds in a day.
pub const DAY_MICROS: i64 = 86_400_000_000;

/// Parses an event time into microseconds since the Unix epoch (UTC).
pub fn parse_event_time(s: &str) -> Option<i64> {
    fast_utc(s.as_bytes()).or_else(|| {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_micros())
            .or_else(|| {
                // Some producers omit the zone; CloudTrail times are UTC.
                chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                    .ok()
                    .map(|t| t.and_utc().timestamp_micros())
            })
    })
}

/// A time argument that is neither RFC 3339, a date nor a span.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time {0:?}: use RFC 3339 or a span like 7d, 12h, 30m")]
pub struct InvalidTime(pub String);

/// `7d`, `12h`, `30m`, `45s` in microseconds.
pub fn parse_span(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = num.parse().ok()?;
    let unit_micros = match unit {
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => DAY_MICROS,
        "w" => 7 * DAY_MICROS,
        _ => return None,
    };
    n.checked_mul(unit_micros)
}

/// A time argument (`--since`, `--until`): RFC 3339, a date, or a span before `now`.
pub fn parse_time_arg(s: &str, now_micros: i64) -> Result<i64, InvalidTime> {
    if let Some(span) = parse_span(s) {
        return Ok(now_micros - span);
    }
    parse_event_time(s)
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp_micros())
        })
        .ok_or_else(|| InvalidTime(s.to_owned()))
}

fn fast_utc(b: &[u8]) -> Option<i64> {
    // 2026-11-01T12:34:56Z
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=days_in_month(y, mo)).contains(&d) {
        return None;
    }
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some(((days * 24 + h) * 60 + mi) * 60_000_000 + s * 1_000_000)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// `YYYY-MM-DD` of a day number.
pub fn format_day(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Now, in microseconds since the epoch (0 if the clock is before 1970).
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of microseconds since the epoch.
pub fn format_micros(micros: i64) -> String {
    let day = micros.div_euclid(DAY_MICROS);
    let rem = micros.rem_euclid(DAY_MICROS) / 1_000_000;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        format_day(day),
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Like [`format_micros`], with the microseconds when there are any
/// (`YYYY-MM-DDTHH:MM:SS.ffffffZ`): exact, for SQL literals.
pub fn format_micros_exact(micros: i64) -> String {
    let frac = micros.rem_euclid(1_000_000);
    let s = format_micros(micros);
    if frac == 0 {
        s
    } else {
        format!("{}.{frac:06}Z", s.trim_end_matches('Z'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_formatting_keeps_microseconds() {
        assert_eq!(
            format_micros_exact(1_000_001),
            "1970-01-01T00:00:01.000001Z"
        );
        assert_eq!(format_micros_exact(2_000_000), "1970-01-01T00:00:02Z");
    }

    #[test]
    fn fast_path_agrees_with_chrono() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59Z",
            "2026-11-01T12:34:56Z",
            "2000-03-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            let want = chrono::DateTime::parse_from_rfc3339(s)
                .expect(s)
                .timestamp_micros();
            assert_eq!(fast_utc(s.as_bytes()), Some(want), "{s}");
            assert_eq!(format_micros(want), s);
        }
    }

    #[test]
    fn other_forms_and_garbage() {
        assert_eq!(
            parse_event_time("2026-11-01T12:34:56.250+01:00"),
            Some(parse_event_time("2026-11-01T11:34:56Z").expect("utc") + 250_000)
        );
        assert!(parse_event_time("2026-11-01T12:34:56").is_some());
        assert_eq!(parse_event_time("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_event_time("yesterday"), None);
        assert_eq!(parse_event_time(""), None);
    }

    #[test]
    fn civil_round_trip() {
        for day in [-800_000, -1, 0, 1, 19_000, 20_424, 2_932_896] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), day);
        }
    }
}
