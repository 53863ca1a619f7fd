//! The first unikernel: prints a greeting and its command line.

#![no_std]
#![no_main]

#[morgana::main]
async fn main() {
    morgana::println!("Hello, world");
    morgana::println!("Command line: {}", morgana::cmdline());
}
