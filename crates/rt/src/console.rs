//! The console: best-effort text output (the tender's stdout), `print!`
//! macros, and a `log` backend.

use crate::device::{Device, DeviceError};
use core::fmt::{self, Write};
use morgana_abi::mft::DeviceKind;

/// Writes bytes to the console, best effort (output may be lost, the call
/// never fails or blocks).
pub fn write(buf: &[u8]) {
    crate::platform::console_write(buf);
}

/// Writes a string to the console.
pub fn write_str(s: &str) {
    write(s.as_bytes());
}

/// Formats to the console through a stack buffer (no allocation, one
/// platform call per 512 bytes).
pub fn write_fmt(args: fmt::Arguments<'_>) {
    let mut b = Buffered::new();
    let _ = b.write_fmt(args);
    b.flush();
}

/// A stack buffer in front of the console.
pub(crate) struct Buffered {
    buf: [u8; 512],
    len: usize,
}

impl Buffered {
    /// An empty buffer.
    pub(crate) const fn new() -> Self {
        Self {
            buf: [0; 512],
            len: 0,
        }
    }

    /// Writes out what is buffered.
    pub(crate) fn flush(&mut self) {
        if self.len > 0 {
            write(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl Write for Buffered {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.as_bytes().chunks(self.buf.len()) {
            if self.len + chunk.len() > self.buf.len() {
                self.flush();
            }
            self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
        Ok(())
    }
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::write_str("\n") };
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

/// The console as a device a program can declare (`console: Console`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Console;

impl Console {
    /// Writes `buf`, best effort; returns the number of bytes written (all).
    pub fn write(&self, buf: &[u8]) -> usize {
        write(buf);
        buf.len()
    }

    /// Writes all of `buf`, best effort.
    pub fn write_all(&self, buf: &[u8]) {
        write(buf);
    }

    /// Writes `line` followed by a newline (one platform call per 512
    /// bytes).
    pub fn log(&self, line: &str) {
        write_fmt(format_args!("{line}\n"));
    }
}

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write(s.as_bytes());
        Ok(())
    }
}

impl Device for Console {
    const NEEDS: &'static [DeviceKind] = &[];

    async fn connect(_names: &'static [&'static str]) -> Result<Self, DeviceError> {
        Ok(Console)
    }
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            if crate::trace::enabled() {
                use core::fmt::Write;
                let mut p = crate::trace::Prefix::new();
                let _ = write!(p, "{}", r.args());
                crate::trace::text(morgana_abi::trace::Kind::Log, r.level() as u32, p.bytes());
            }
            let t = crate::time::Instant::now().as_nanos();
            write_fmt(format_args!(
                "[{:>5}.{:06}] {:<5} {}: {}\n",
                t / 1_000_000_000,
                t / 1_000 % 1_000_000,
                r.level(),
                r.target(),
                r.args()
            ));
        }
    }

    fn flush(&self) {}
}

/// Installs the console as the `log` crate's logger, at `level`.
/// Calling it again only changes the level.
pub fn init_logger(level: log::LevelFilter) {
    static LOGGER: Logger = Logger;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
