//! Does nothing at all, then exits 0: the classic first MirageOS unikernel.

#![no_std]
#![no_main]

#[morgana::main]
async fn main() {}
