//! Reading a frame's top-level map straight into the members that classify a message,
//! without building a map value for it first: only the members' values are [`Value`]s.
//!
//! It takes what reading the whole frame as one [`Value`] takes, and refuses what that
//! refuses (binary and extension values, non-string keys, anywhere in the frame), so the
//! two ways decode bodies alike; the tests compare them on arbitrary bytes. One
//! difference, on purpose: a top-level key must be a string, where a map value also
//! takes UTF-8 binary for keys after the first.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::Value;
use crate::message::Fields;

/// A frame's value: a map's classifying members, or something other than a map.
pub(super) enum Top {
    Map(Fields),
    NotMap,
}

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

struct TopVisitor;

/// A value that is not a map: read whole, so that what a [`Value`] refuses is refused.
macro_rules! not_a_map {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method<E: de::Error>(self, _: $ty) -> Result<Top, E> {
            Ok(Top::NotMap)
        })*
    };
}

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    not_a_map!(
        visit_bool(bool),
        visit_i64(i64),
        visit_i128(i128),
        visit_u64(u64),
        visit_u128(u128),
        visit_f64(f64),
        visit_str(&str),
    );

    fn visit_unit<E: de::Error>(self) -> Result<Top, E> {
        Ok(Top::NotMap)
    }

    fn visit_none<E: de::Error>(self) -> Result<Top, E> {
        Ok(Top::NotMap)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Top, D::Error> {
        Value::deserialize(d).map(|_| Top::NotMap)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
        while seq.next_element::<Value>()?.is_some() {}
        Ok(Top::NotMap)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut fields = Fields::default();
        // As in a map value, a key given twice keeps its last value.
        while let Some(key) = map.next_key::<Key>()? {
            // Unknown members are read as values too, held to the same shape.
            let value = map.next_value::<Value>()?;
            let slot = match key {
                Key::Id => &mut fields.id,
                Key::Method => &mut fields.method,
                Key::Params => &mut fields.params,
                Key::Result => &mut fields.result,
                Key::Error => &mut fields.error,
                Key::Chunk => &mut fields.chunk,
                Key::Other => continue,
            };
            *slot = Some(value);
        }
        Ok(Top::Map(fields))
    }
}

/// A top-level key: a string. (A map value takes UTF-8 binary as a key after the first
/// one, a quirk of `serde_json`'s: here binary keys are refused wherever they are.)
enum Key {
    Id,
    Method,
    Params,
    Result,
    Error,
    Chunk,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "id" => Key::Id,
            "method" => Key::Method,
            "params" => Key::Params,
            "result" => Key::Result,
            "error" => Key::Error,
            "chunk" => Key::Chunk,
            _ => Key::Other,
        })
    }
}
