//! For the debugger tests: calls `checkpoint` three times (the test breaks
//! there and reads `counter`), prints the total and exits with 7 when it is
//! 123. With the argument `spin` it then loops forever (the test interrupts
//! it with Ctrl-C).

#![no_std]
#![no_main]

/// The function the gdb test breaks on.
#[inline(never)]
fn checkpoint(counter: u64) -> u64 {
    let doubled = counter * 2;
    core::hint::black_box(doubled) + 1
}

#[morgana::main]
async fn main() -> u8 {
    let spin = morgana::args().any(|a| a == "spin");
    let mut total = 0;
    for i in 1..=3 {
        total += checkpoint(i * 10);
    }
    morgana::println!("gdb: total {total}");
    while spin {
        core::hint::black_box(&mut total);
    }
    if total == 123 { 7 } else { 1 }
}
