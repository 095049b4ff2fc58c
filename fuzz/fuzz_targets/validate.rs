//! Arbitrary bytes → a frame body; when it decodes, its params go through `parse_params`
//! for `app.register`, `capability.register`, `hook.result`, `config.watch` (and more),
//! `Manifest::validate` and `CapabilityConfig::parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    burrow_protocol::fuzzing::validate_target(data);
});
