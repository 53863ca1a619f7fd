//! The crypto provider (rustls-rustcrypto, with Morgana's randomness) and
//! the wall clock, as rustls needs them.

use alloc::sync::Arc;
use rustls::crypto::{CryptoProvider, GetRandomFailed, SecureRandom};
use rustls::time_provider::TimeProvider;
use rustls_pki_types::UnixTime;

/// Random bytes from Morgana's `Random` device (ChaCha20 seeded from
/// RDSEED/RDRAND).
#[derive(Debug)]
struct MorganaRandom;

impl SecureRandom for MorganaRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        morgana::random::fill_bytes(buf);
        Ok(())
    }
}

/// The RustCrypto key exchanges and signatures draw their randomness through
/// `getrandom`: on the bare platforms it is Morgana's `Random` device too
/// (on unix, the host's `getrandom(2)`, which also seeds that device).
#[cfg(target_os = "none")]
fn getrandom_morgana(buf: &mut [u8]) -> Result<(), getrandom::Error> {
    morgana::random::fill_bytes(buf);
    Ok(())
}

#[cfg(target_os = "none")]
getrandom::register_custom_getrandom!(getrandom_morgana);

/// The wall clock, for certificate validity.
#[derive(Debug)]
pub(crate) struct MorganaTime;

impl TimeProvider for MorganaTime {
    fn current_time(&self) -> Option<UnixTime> {
        let nanos = morgana::WallTime::now().unix_nanos();
        Some(UnixTime::since_unix_epoch(
            core::time::Duration::from_nanos(nanos),
        ))
    }
}

/// The crypto provider: rustls-rustcrypto's cipher suites (TLS 1.3:
/// AES-128/256-GCM, ChaCha20-Poly1305; TLS 1.2: ECDHE with the same),
/// key exchanges (X25519, P-256, P-384) and signatures (ECDSA, Ed25519,
/// RSA), with randomness from Morgana's `Random` device.
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls_rustcrypto::provider();
    p.secure_random = &MorganaRandom;
    Arc::new(p)
}

/// The time provider.
pub(crate) fn time() -> Arc<dyn TimeProvider> {
    Arc::new(MorganaTime)
}
