//! Faults on purpose: `unmapped` writes below 0x10000 (never mapped),
//! `high` writes far beyond guest memory, `text` writes to its own code.

#![no_std]
#![no_main]

#[morgana::main]
async fn main() -> u8 {
    let mode = morgana::args().next().unwrap_or("");
    let addr: usize = match mode {
        "unmapped" => 0x8,
        "high" => 0x10_0000_0000,
        "text" => main as *const () as usize,
        _ => {
            morgana::println!("usage: t-fault unmapped|high|text");
            return 2;
        }
    };
    morgana::println!("fault: writing to {addr:#x}");
    // SAFETY: not safe at all: this write is the test.
    unsafe { core::ptr::write_volatile(addr as *mut u8, 0xc3) };
    morgana::println!("fault: the write did not fault");
    1
}
