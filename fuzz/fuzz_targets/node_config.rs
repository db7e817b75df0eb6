//! The node configuration (`mft_config::NodeConfig::parse`): any text. Checks: no panic (every
//! refusal is an error naming the key).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = mft_config::NodeConfig::parse(text);
});
