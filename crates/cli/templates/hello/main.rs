//! {{name}}: a Morgana unikernel. It prints a greeting and its command line.

#![no_std]
#![no_main]

#[morgana::main]
async fn main() {
    morgana::println!("Hello from {{name}} on {}", morgana::PLATFORM);
    morgana::println!("Command line: {}", morgana::cmdline());
}
