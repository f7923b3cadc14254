//! UTC calendar dates for timestamps shown to people and written to logs.

/// The UTC date and time of `at` (Unix seconds): `(year, month, day, hour, minute, second)`, in
/// the proleptic Gregorian calendar (days to a civil date by eras of 400 years).
pub fn utc(at: i64) -> (i64, u32, u32, u32, u32, u32) {
    let (days, secs) = (at.div_euclid(86_400), at.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Every value below is in range by construction (day 1-31, month 1-12, secs < 86,400).
    let small = |v: i64| u32::try_from(v).unwrap_or(0);
    (
        year,
        small(month),
        small(day),
        small(secs / 3600),
        small(secs % 3600 / 60),
        small(secs % 60),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_seconds_to_utc_civil_dates() {
        assert_eq!(utc(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(utc(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(utc(1_796_459_400), (2026, 12, 5, 8, 30, 0));
        assert_eq!(utc(4_102_444_799), (2099, 12, 31, 23, 59, 59));
        assert_eq!(utc(-86_400), (1969, 12, 31, 0, 0, 0));
    }
}
