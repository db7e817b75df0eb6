//! logd's request decoding (`logd::decode_request`): any line. Checks: no panic; a refusal names
//! the field at fault and says why; a refusal that carries an id carries the line's own.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    if let Err((id, field, message)) = logd::decode_request(line) {
        assert!(!field.is_empty() && !message.is_empty());
        if let Some(id) = id {
            let sent: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(sent["id"].as_u64(), Some(id));
        }
    }
});
