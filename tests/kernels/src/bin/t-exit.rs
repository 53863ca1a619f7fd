//! Exits with the status given as its first argument (default 0), after
//! sleeping for the number of milliseconds given as its second (default 0:
//! tests look at the running tender meanwhile).

#![no_std]
#![no_main]

use core::time::Duration;

#[morgana::main]
async fn main() -> u8 {
    let mut args = morgana::args();
    let status = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let hold: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    if hold > 0 {
        morgana::println!("holding for {hold} ms");
        morgana::sleep(Duration::from_millis(hold)).await;
    }
    morgana::println!("exiting with {status}");
    status
}
