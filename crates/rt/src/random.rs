//! Random bytes: a ChaCha20 CSPRNG seeded from the CPU's RDSEED/RDRAND
//! when it has them (or the host's `getrandom` on unix), and fed with
//! timing jitter after every yield to the platform.

use crate::device::{Device, DeviceError};
use crate::global::Global;
use morgana_abi::mft::DeviceKind;
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};

struct State {
    rng: Option<ChaCha20Rng>,
    pool: u64,
    fresh: bool,
}

static STATE: Global<State> = Global::new(State {
    rng: None,
    pool: 0,
    fresh: false,
});

/// Where the seed came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedSource {
    /// The RDSEED instruction.
    Rdseed,
    /// The RDRAND instruction.
    Rdrand,
    /// The host's `getrandom(2)` (unix platform).
    Host,
    /// Clock jitter only: no hardware source (weak).
    Clocks,
}

#[cfg(target_arch = "x86_64")]
fn cpu_has(leaf: u32, reg_ebx: bool, bit: u32) -> bool {
    use core::arch::x86_64::__cpuid_count;
    let r = __cpuid_count(leaf, 0);
    (if reg_ebx { r.ebx } else { r.ecx }) & (1 << bit) != 0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "rdseed")]
fn rdseed() -> Option<u64> {
    let mut v = 0;
    for _ in 0..64 {
        if core::arch::x86_64::_rdseed64_step(&mut v) == 1 {
            return Some(v);
        }
    }
    None
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "rdrand")]
fn rdrand() -> Option<u64> {
    let mut v = 0;
    for _ in 0..16 {
        if core::arch::x86_64::_rdrand64_step(&mut v) == 1 {
            return Some(v);
        }
    }
    None
}

fn hardware_seed(seed: &mut [u8; 32]) -> SeedSource {
    if crate::platform::host_random(seed) {
        return SeedSource::Host;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let max_leaf = core::arch::x86_64::__cpuid(0).eax;
        let has_rdseed = max_leaf >= 7 && cpu_has(7, true, 18);
        let has_rdrand = cpu_has(1, false, 30);
        for (source, ok) in [
            (SeedSource::Rdseed, has_rdseed),
            (SeedSource::Rdrand, has_rdrand),
        ] {
            if !ok {
                continue;
            }
            let mut good = true;
            for chunk in seed.chunks_mut(8) {
                // SAFETY: CPUID says the instruction exists.
                let v = unsafe {
                    if source == SeedSource::Rdseed {
                        rdseed()
                    } else {
                        rdrand()
                    }
                };
                match v {
                    Some(v) => chunk.copy_from_slice(&v.to_le_bytes()),
                    None => good = false,
                }
            }
            if good {
                return source;
            }
        }
    }
    let mut x = crate::platform::clock_wall() ^ crate::platform::clock_monotonic().rotate_left(32);
    for chunk in seed.chunks_mut(8) {
        x ^= crate::platform::clock_monotonic();
        x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    SeedSource::Clocks
}

/// Seeds the generator (once) and returns where the seed came from.
pub fn seed_source() -> SeedSource {
    static SOURCE: Global<Option<SeedSource>> = Global::new(None);
    if let Some(s) = SOURCE.with(|s| *s) {
        return s;
    }
    let mut seed = [0u8; 32];
    let source = hardware_seed(&mut seed);
    STATE.with(|st| st.rng = Some(ChaCha20Rng::from_seed(seed)));
    SOURCE.with(|s| *s = Some(source));
    crate::exec::on_yield(|| {
        let t = crate::platform::clock_monotonic();
        STATE.with(|st| {
            st.pool = st.pool.rotate_left(7) ^ t;
            st.fresh = true;
        });
    });
    source
}

/// Fills `buf` with cryptographically secure random bytes.
pub fn fill_bytes(buf: &mut [u8]) {
    seed_source();
    STATE.with(|st| {
        let rng = st.rng.as_mut().expect("seeded");
        if st.fresh {
            // Mix the timing jitter gathered since the last call into a
            // fresh key.
            let mut key = [0u8; 32];
            rng.fill_bytes(&mut key);
            for (k, p) in key.iter_mut().zip(st.pool.to_le_bytes().iter().cycle()) {
                *k ^= p;
            }
            *rng = ChaCha20Rng::from_seed(key);
            st.fresh = false;
        }
        rng.fill_bytes(buf);
    });
}

/// The random number generator as a device a program can declare
/// (`random: Random`); implements `rand_core::RngCore` and `CryptoRng`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Random;

impl RngCore for Random {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        fill_bytes(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for Random {}

impl Device for Random {
    const NEEDS: &'static [DeviceKind] = &[];

    async fn connect(_names: &'static [&'static str]) -> Result<Self, DeviceError> {
        seed_source();
        Ok(Random)
    }
}
