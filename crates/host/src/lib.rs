//! The host side of Morgana's devices, shared by the tenders (`morgana-hvt`,
//! `morgana-spt`) and by the unix platform of the guest runtime:
//!
//! * [`args`]: Solo5's tender command line (`--net:NAME=IFACE`, ...);
//! * [`tap`]: attaching to an existing tap interface;
//! * [`attach`]: attaching every device of a manifest from the options,
//!   with the same checks and messages everywhere.

pub mod args;
pub mod attach;
pub mod tap;

pub use attach::{AttachError, Attached, Device, attach_devices, attach_devices_offload};
