//! The length of one MessagePack value at the start of a buffer, read from its markers
//! without decoding it: so a frame body can be decoded straight from its bytes (strings
//! copied once, into the value) and still be checked for trailing bytes.

/// Bytes taken by the first MessagePack value of `buf`; `None` when `buf` ends inside it
/// or holds the never-used marker `0xc1`.
pub fn value_len(buf: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    // Values still to skip: a container adds its elements. Every value takes at least one
    // byte, so the loop ends within `buf.len()` rounds.
    let mut left: u64 = 1;
    while left > 0 {
        let marker = *buf.get(at)?;
        at += 1;
        left -= 1;
        let (payload, children): (usize, u64) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (usize::from(marker & 0x1f), 0),
            0xc1 => return None,
            // bin, str: a length, then that many bytes.
            0xc4 | 0xd9 => (sized(buf, at, 1, 1)?, 0),
            0xc5 | 0xda => (sized(buf, at, 2, 2)?, 0),
            0xc6 | 0xdb => (sized(buf, at, 4, 4)?, 0),
            // ext: a length and a type byte, then that many bytes.
            0xc7 => (sized(buf, at, 1, 2)?, 0),
            0xc8 => (sized(buf, at, 2, 3)?, 0),
            0xc9 => (sized(buf, at, 4, 5)?, 0),
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (2, be(buf, at, 2)? as u64),
            0xdd => (4, be(buf, at, 4)? as u64),
            0xde => (2, 2 * be(buf, at, 2)? as u64),
            0xdf => (4, 2 * be(buf, at, 4)? as u64),
        };
        at = at.checked_add(payload).filter(|end| *end <= buf.len())?;
        left = left.checked_add(children)?;
    }
    Some(at)
}

/// The big-endian unsigned integer of `n` bytes at `at`.
fn be(buf: &[u8], at: usize, n: usize) -> Option<usize> {
    let bytes = buf.get(at..at.checked_add(n)?)?;
    Some(bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)))
}

/// A payload whose length is the `n`-byte integer at `at`, plus the `header` bytes
/// before the payload.
fn sized(buf: &[u8], at: usize, n: usize, header: usize) -> Option<usize> {
    Some(be(buf, at, n)?.saturating_add(header))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_length_of_every_kind_of_value_is_read_from_its_markers() {
        let values = [
            json!(null),
            json!(true),
            json!(7),
            json!(-3),
            json!(-200),
            json!(300),
            json!(70_000),
            json!(5_000_000_000u64),
            json!(-5_000_000_000i64),
            json!(1.5),
            json!("short"),
            json!("x".repeat(40)),
            json!("y".repeat(300)),
            json!("z".repeat(70_000)),
            json!([1, [2, [3, {}]], "a"]),
            json!((0..20).collect::<Vec<_>>()),
            json!({"id": 1, "method": "m", "params": {"a": [1, 2, {"b": null}]}}),
            json!((0..20).map(|i| (i.to_string(), json!(i))).collect::<serde_json::Map<_, _>>()),
        ];
        for v in values {
            let mut bytes = rmp_serde::to_vec_named(&v).unwrap();
            assert_eq!(value_len(&bytes), Some(bytes.len()), "{v}");
            bytes.extend_from_slice(&[0xc0, 0x01]);
            assert_eq!(value_len(&bytes), Some(bytes.len() - 2), "{v} with trailing bytes");
        }
        // Binary and extension values.
        let bin = rmp_serde::to_vec(&serde_bytes_like(300)).unwrap();
        assert_eq!(value_len(&bin), Some(bin.len()));
        for ext in [&[0xd4, 1, 2][..], &[0xd8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]] {
            assert_eq!(value_len(ext), Some(ext.len()));
        }
        assert_eq!(value_len(&[0xc7, 2, 9, 0xaa, 0xbb]), Some(5));
    }

    fn serde_bytes_like(n: usize) -> rmpv_bin::Bin {
        rmpv_bin::Bin(vec![7; n])
    }

    mod rmpv_bin {
        /// Serializes as MessagePack binary.
        pub struct Bin(pub Vec<u8>);
        impl serde::Serialize for Bin {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }

    #[test]
    fn a_value_cut_short_or_a_bad_marker_has_no_length() {
        let bytes = rmp_serde::to_vec_named(&json!({"id": 1, "method": "mmmm"})).unwrap();
        for end in 0..bytes.len() {
            assert_eq!(value_len(&bytes[..end]), None, "cut at {end}");
        }
        assert_eq!(value_len(&[0xc1]), None);
        // A container that claims more elements than there are bytes.
        assert_eq!(value_len(&[0xdd, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(value_len(&[0xdb, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
