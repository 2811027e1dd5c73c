//! Arbitrary sequences of host calls against the real host implementation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmflow::fuzzing::{HostOp, host_calls};

fuzz_target!(|input: (u8, Vec<HostOp>)| {
    host_calls(&input.1, u64::from(input.0 % 16));
});
