//! Panics with a known message.

#![no_std]
#![no_main]

#[morgana::main]
async fn main() {
    let n = morgana::args().count() as u32;
    panic!("deliberate panic {}", 42 + n);
}
