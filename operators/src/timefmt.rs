//! RFC 3339 timestamps without a date-time dependency: parsing into and
//! formatting from `i64` milliseconds since the Unix epoch, on the proleptic
//! Gregorian calendar (Howard Hinnant's `days_from_civil` / `civil_from_days`).
//!
//! Choices (pinned by tests, documented in docs/expressions.md):
//! - the date and time are separated by `T` or `t` (a space is not accepted);
//!   the offset is `Z`, `z` or `+hh:mm` / `-hh:mm`;
//! - years are four digits, `0000` to `9999`;
//! - seconds are `00`..`59`: a leap second (`60`) is rejected, since
//!   milliseconds since the epoch cannot represent it;
//! - any number of fractional digits is accepted; digits beyond milliseconds
//!   are dropped, which rounds toward negative infinity (the fraction is
//!   always added to the instant, so dropping digits never rounds up).

const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (`m` in 1..=12,
/// `d` in 1..=31, not validated here).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = y - era * 400; // [0, 399]
    let mp = if m > 2 { m - 3 } else { m + 9 }; // [0, 11]
    let doy = (153 * mp + 2) / 5 + d - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `(year, month, day)` of a count of days since
/// 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = (if z >= 0 { z } else { z - 146_096 }) / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Reads exactly `n` ASCII digits at `*pos`, advancing it.
fn digits(b: &[u8], pos: &mut usize, n: usize) -> Option<i64> {
    let end = pos.checked_add(n)?;
    let s = b.get(*pos..end)?;
    let mut v = 0i64;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    *pos = end;
    Some(v)
}

fn expect(b: &[u8], pos: &mut usize, want: &[u8]) -> Option<()> {
    let c = *b.get(*pos)?;
    if want.contains(&c) {
        *pos += 1;
        Some(())
    } else {
        None
    }
}

/// Parses an RFC 3339 date-time (`2023-11-14T22:13:20Z`,
/// `2023-11-14T22:13:20.123+01:00`; `t` and `z` may be lowercase; a space
/// separator is not accepted) into milliseconds since the Unix epoch.
///
/// Fractional digits beyond milliseconds are dropped, which truncates toward
/// negative infinity. Months, days (leap years included), hours (`< 24`),
/// minutes (`< 60`) and seconds (`< 60`: a leap second `60` is rejected) are
/// validated; an offset is at most `23:59`. Returns `None` when the text is not
/// such a date-time.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let mut p = 0;
    let year = digits(b, &mut p, 4)?;
    expect(b, &mut p, b"-")?;
    let month = digits(b, &mut p, 2)?;
    expect(b, &mut p, b"-")?;
    let day = digits(b, &mut p, 2)?;
    expect(b, &mut p, b"Tt")?;
    let hour = digits(b, &mut p, 2)?;
    expect(b, &mut p, b":")?;
    let minute = digits(b, &mut p, 2)?;
    expect(b, &mut p, b":")?;
    let second = digits(b, &mut p, 2)?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut ms = 0i64;
    if b.get(p) == Some(&b'.') {
        p += 1;
        let start = p;
        while b.get(p).is_some_and(u8::is_ascii_digit) {
            if p - start < 3 {
                ms = ms * 10 + i64::from(b[p] - b'0');
            }
            p += 1;
        }
        let n = p - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            ms *= 10;
        }
    }
    let offset_min = match b.get(p)? {
        b'Z' | b'z' => {
            p += 1;
            0
        }
        c @ (b'+' | b'-') => {
            let sign = if *c == b'-' { -1 } else { 1 };
            p += 1;
            let oh = digits(b, &mut p, 2)?;
            expect(b, &mut p, b":")?;
            let om = digits(b, &mut p, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 60 + om)
        }
        _ => return None,
    };
    if p != b.len() {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let local = days * MS_PER_DAY + hour * 3_600_000 + minute * 60_000 + second * 1000 + ms;
    Some(local - offset_min * 60_000)
}

/// Formats milliseconds since the Unix epoch as RFC 3339 in UTC with exactly
/// three fractional digits (`2023-11-14T22:13:20.000Z`); `None` when the
/// year falls outside `0000..=9999`.
pub fn format_rfc3339(ms: i64) -> Option<String> {
    let days = ms.div_euclid(MS_PER_DAY);
    let rem = ms.rem_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let (h, rem) = (rem / 3_600_000, rem % 3_600_000);
    let (mi, rem) = (rem / 60_000, rem % 60_000);
    let (s, milli) = (rem / 1000, rem % 1000);
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339() {
        let ok = [
            ("1970-01-01T00:00:00Z", 0),
            ("2023-11-14T22:13:20Z", 1_700_000_000_000),
            ("2023-11-14t22:13:20z", 1_700_000_000_000),
            ("2023-11-14T22:13:20.123Z", 1_700_000_000_123),
            ("2023-11-14T22:13:20.1Z", 1_700_000_000_100),
            ("2023-11-14T22:13:20.123999Z", 1_700_000_000_123),
            ("2023-11-14T23:13:20+01:00", 1_700_000_000_000),
            ("2023-11-14T21:13:20-01:00", 1_700_000_000_000),
            ("2023-11-14T22:13:20-00:00", 1_700_000_000_000),
            ("1969-12-31T23:59:59.9999Z", -1),
            ("2000-02-29T00:00:00Z", 951_782_400_000),
            ("0000-01-01T00:00:00Z", -62_167_219_200_000),
            ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
        ];
        for (s, want) in ok {
            assert_eq!(parse_rfc3339(s), Some(want), "{s}");
        }
        let bad = [
            "",
            "2023-11-14 22:13:20Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13Z",
            "2023-13-14T22:13:20Z",
            "2023-00-14T22:13:20Z",
            "2023-02-29T22:13:20Z",
            "1900-02-29T00:00:00Z",
            "2023-04-31T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:60:00Z",
            "2016-12-31T23:59:60Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+1:00",
            "2023-11-14T22:13:20+24:00",
            "2023-11-14T22:13:20Zx",
            "+2023-11-14T22:13:20Z",
            "2023-11-14T22:13:20.12é",
            "２023-11-14T22:13:20Z",
        ];
        for s in bad {
            assert_eq!(parse_rfc3339(s), None, "{s}");
        }
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(
            format_rfc3339(1_700_000_000_000).as_deref(),
            Some("2023-11-14T22:13:20.000Z")
        );
        assert_eq!(
            format_rfc3339(-1).as_deref(),
            Some("1969-12-31T23:59:59.999Z")
        );
        assert_eq!(
            format_rfc3339(-62_167_219_200_000).as_deref(),
            Some("0000-01-01T00:00:00.000Z")
        );
        assert_eq!(format_rfc3339(-62_167_219_200_001), None);
        assert_eq!(format_rfc3339(253_402_300_800_000), None);
        assert_eq!(format_rfc3339(i64::MIN), None);
        assert_eq!(format_rfc3339(i64::MAX), None);
    }

    #[test]
    fn civil_round_trips() {
        for z in (-800_000..800_000).step_by(37) {
            let (y, m, d) = civil_from_days(z);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), z);
        }
        for ms in [0, 1, -1, 951_782_400_000, 253_402_300_799_999] {
            let s = format_rfc3339(ms).unwrap();
            assert_eq!(parse_rfc3339(&s), Some(ms), "{s}");
        }
    }
}
