//! Exits with the status given as its first argument (default 0).

#![no_std]
#![no_main]

#[morgana::main]
async fn main() -> u8 {
    let status = morgana::args()
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    morgana::println!("exiting with {status}");
    status
}
