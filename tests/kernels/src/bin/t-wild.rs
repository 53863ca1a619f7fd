//! Hands the hvt tender wild pointers and lengths, one per mode; the tender
//! must stop with "invalid guest access" without touching host memory.
//! Run with --mem=32 (the addresses below assume 32 MiB).

#![no_std]
#![no_main]

#[cfg(morgana_platform = "hvt")]
#[morgana::main]
async fn main() -> u8 {
    use morgana::abi::hvt::{HcHalt, HcPuts, HcWalltime, Hypercall};
    use morgana::platform::hvt::raw_hypercall;
    const MEM: u64 = 32 << 20;
    let mode = morgana::args().next().unwrap_or("");
    morgana::println!("wild: {mode}");
    let mut puts = HcPuts { data: 0, len: 0 };
    let mut halt = HcHalt {
        cookie: 0,
        exit_status: 0,
    };
    let (nr, arg) = match mode {
        // Data pointer past the end of memory.
        "data-past-end" => {
            puts = HcPuts {
                data: MEM - 8,
                len: 64,
            };
            (Hypercall::Puts, &raw mut puts as u64)
        }
        // A length that overflows when added to the pointer.
        "len-overflow" => {
            puts = HcPuts {
                data: 0x100000,
                len: u64::MAX - 0xfff,
            };
            (Hypercall::Puts, &raw mut puts as u64)
        }
        // The argument structure itself beyond memory.
        "arg-past-end" => (Hypercall::Puts, 0xffff_f000),
        // The argument structure straddling the end of memory.
        "arg-straddles-end" => (Hypercall::Poll, MEM - 8),
        // A halt cookie that does not fit in memory.
        "cookie-past-end" => {
            halt = HcHalt {
                cookie: MEM - 16,
                exit_status: 0,
            };
            (Hypercall::Halt, &raw mut halt as u64)
        }
        // An argument structure in the image's read-only data: the tender
        // would write its result there.
        "arg-read-only" => {
            static RO: HcWalltime = HcWalltime { nsecs: 0 };
            (Hypercall::Walltime, &raw const RO as u64)
        }
        _ => {
            morgana::println!("usage: t-wild MODE");
            return 2;
        }
    };
    // SAFETY: every argument structure above is a live local or a static
    // (which the tender must refuse to write), and no hypercall here writes
    // through a guest pointer other than its argument.
    unsafe { raw_hypercall(nr as u16, arg as u32) };
    let _ = (puts.len, halt.cookie);
    morgana::println!("wild: the tender accepted it");
    1
}

#[cfg(not(morgana_platform = "hvt"))]
#[morgana::main]
async fn main() -> u8 {
    morgana::println!("wild: hvt only");
    2
}
