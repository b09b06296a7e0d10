//! A `Vec<u8>` field that serde writes and reads as bytes (`#[serde(with =
//! "crate::bytes_field")]`) instead of as a sequence of `u8`, one call per byte.
//!
//! In bincode's format the two are the same bytes (a length, then the bytes), so a field can
//! switch to this without changing what is on disk or on the wire; only the cost changes:
//! decoding a 1 KiB value went from a thousand visitor calls to one copy.

use std::fmt;

pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(v)
}

pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(b) = a.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
    d.deserialize_bytes(V)
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct AsSeq {
        a: i64,
        v: Vec<u8>,
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct AsBytes {
        a: i64,
        #[serde(with = "super")]
        v: Vec<u8>,
    }

    fn enc<T: Serialize>(t: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(t, bincode::config::standard()).unwrap()
    }

    #[test]
    fn bytes_and_a_sequence_of_u8_are_the_same_bincode() {
        for v in [
            vec![],
            vec![0u8],
            (0..=255u8).collect::<Vec<_>>(),
            vec![7u8; 70_000],
        ] {
            let seq = AsSeq {
                a: -3,
                v: v.clone(),
            };
            let bytes = AsBytes { a: -3, v };
            assert_eq!(enc(&seq), enc(&bytes));
            let (back, _): (AsBytes, usize) =
                bincode::serde::decode_from_slice(&enc(&seq), bincode::config::standard()).unwrap();
            assert_eq!(back, bytes);
        }
    }
}
