//! Clocks: monotonic time (see [`crate::time::Instant`]) and wall-clock
//! time with a calendar breakdown (UTC).

use crate::device::{Device, DeviceError};
use crate::time::Instant;
use core::fmt;
use morgana_abi::mft::DeviceKind;

/// A wall-clock reading: nanoseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WallTime(u64);

impl WallTime {
    /// The host's wall clock now (a platform call each time).
    pub fn now() -> Self {
        Self(crate::platform::clock_wall())
    }

    /// The time `nanos` nanoseconds after the epoch.
    pub const fn from_unix_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// Nanoseconds since the epoch.
    pub const fn unix_nanos(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch.
    pub const fn unix_secs(self) -> u64 {
        self.0 / 1_000_000_000
    }

    /// The calendar date and time (UTC).
    pub fn calendar(self) -> Calendar {
        let secs = self.unix_secs();
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        // Civil-from-days (proleptic Gregorian), after H. Hinnant.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Calendar {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
            nanosecond: (self.0 % 1_000_000_000) as u32,
            weekday: ((days + 4).rem_euclid(7)) as u8,
        }
    }
}

/// A UTC calendar date and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Calendar {
    /// Year (e.g. 2026).
    pub year: i32,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day of the month, 1 to 31.
    pub day: u8,
    /// Hour, 0 to 23.
    pub hour: u8,
    /// Minute, 0 to 59.
    pub minute: u8,
    /// Second, 0 to 59.
    pub second: u8,
    /// Nanoseconds within the second.
    pub nanosecond: u32,
    /// Day of the week, 0 = Sunday.
    pub weekday: u8,
}

impl fmt::Display for Calendar {
    /// RFC 3339, e.g. `2026-11-21T04:57:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// The clocks as a device a program can declare (`clock: Clock`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock;

impl Clock {
    /// Monotonic time.
    pub fn monotonic(&self) -> Instant {
        Instant::now()
    }

    /// Wall-clock time.
    pub fn wall(&self) -> WallTime {
        WallTime::now()
    }
}

impl Device for Clock {
    const NEEDS: &'static [DeviceKind] = &[];

    async fn connect(_names: &'static [&'static str]) -> Result<Self, DeviceError> {
        Ok(Clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn calendar_breakdown() {
        let c = WallTime::from_unix_nanos(0).calendar();
        assert_eq!((c.year, c.month, c.day, c.weekday), (1970, 1, 1, 4));
        // 2026-11-21T04:57:03.5Z, a Saturday.
        let t = 1_795_237_023_500_000_000;
        let c = WallTime::from_unix_nanos(t).calendar();
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second),
            (2026, 11, 21, 4, 57, 3)
        );
        assert_eq!(c.nanosecond, 500_000_000);
        assert_eq!(c.weekday, 6);
        assert_eq!(c.to_string(), "2026-11-21T04:57:03Z");
        // Leap day.
        let c = WallTime::from_unix_nanos(951_782_400 * 1_000_000_000).calendar();
        assert_eq!((c.year, c.month, c.day), (2000, 2, 29));
    }
}
