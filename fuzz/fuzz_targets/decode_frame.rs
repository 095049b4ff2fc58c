//! Arbitrary bytes → `codec::decode_frame` (default and small limits) and `decode_body`;
//! every decoded message must re-encode and decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    burrow_protocol::fuzzing::decode_frame_target(data);
});
