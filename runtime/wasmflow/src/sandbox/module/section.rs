//! The `wasmflow-workflow` custom section: what a compiled workflow says
//! about itself, readable without running any of its code.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Name of the custom section, at the top level of the component.
pub const SECTION_NAME: &str = "wasmflow-workflow";

/// Version of the section's own layout.
pub const SECTION_FORMAT: u32 = 1;

/// The WIT package this wasmflow speaks, as `namespace:name@version`.
pub const WIT_PACKAGE: &str = "wasmflow:workflow@0.1.0";

/// The version part of [`WIT_PACKAGE`].
pub const WIT_VERSION: &str = "0.1.0";

/// The section's content (JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkflowSection {
    /// Layout version of this section ([`SECTION_FORMAT`]).
    pub format: u32,
    /// The wasmflow version that built the module.
    pub wasmflow: String,
    /// The WIT package the module was built against ([`WIT_PACKAGE`]).
    pub wit: String,
    /// The script's file name, as stack traces show it.
    pub filename: String,
    /// SHA-256 of the script source, hex.
    pub sha256: String,
    /// The script's `meta`, when it has one.
    pub meta: Option<Value>,
    /// The script source. It travels with the module so that `run` gives
    /// the same static checks, model preflight and error positions as the
    /// `.js` file would.
    pub source: String,
}

/// Appends a custom section to a component or module.
pub fn append_custom_section(wasm: &mut Vec<u8>, name: &str, payload: &[u8]) {
    let mut body = Vec::with_capacity(name.len() + payload.len() + 5);
    leb128(&mut body, name.len() as u64);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    wasm.push(0);
    leb128(wasm, body.len() as u64);
    wasm.extend_from_slice(&body);
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
