//! {{name}}: a Morgana unikernel that counts its boots in a persistent
//! key-value store on the block device `storage` (a zero-filled file makes
//! a new store: `truncate -s 1M disk.img`).

#![no_std]
#![no_main]

use morgana_kv::{Kv, KvError};

#[morgana::main]
async fn main(storage: Kv) -> Result<(), KvError> {
    let boots = match storage.get("boots").await? {
        Some(v) => u32::from_le_bytes(v.try_into().unwrap_or_default()) + 1,
        None => 1,
    };
    // On the disk when `set` returns.
    storage.set("boots", &boots.to_le_bytes()).await?;
    morgana::println!("{{name}}: boot number {boots}");
    Ok(())
}
