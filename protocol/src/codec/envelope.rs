//! Reading a frame's top-level map straight into the members that classify a message,
//! without building a map value for it first: only the members' values are
//! [`Value`](crate::Value)s.
//!
//! Values are read strictly ([`crate::strict`]): binary and extension values, non-string
//! keys and the reserved key are refused anywhere in the frame, as docs/protocol.md §2
//! says, and a non-finite float anywhere is noted for the caller to refuse the frame. The
//! tests compare this reader with reading the whole frame as one [`Value`](crate::Value)
//! on arbitrary bytes.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::message::Fields;
use crate::strict::{At, Json, Refused, StringKey};

/// A frame's value: a map's classifying members, or something other than a map.
pub(super) enum Top {
    Map(Fields),
    NotMap,
}

/// Reads a frame's [`Top`], noting a non-finite float anywhere in it in the [`Refused`].
pub(super) struct TopSeed<'a>(pub(super) &'a Refused);

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = Top;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Top, D::Error> {
        d.deserialize_any(TopVisitor(self.0))
    }
}

struct TopVisitor<'a>(&'a Refused);

/// A value that is not a map: read whole, so that what a [`Value`](crate::Value) refuses
/// is refused.
macro_rules! not_a_map {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method<E: de::Error>(self, _: $ty) -> Result<Top, E> {
            Ok(Top::NotMap)
        })*
    };
}

impl<'de> Visitor<'de> for TopVisitor<'_> {
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
        Json::top(self.0).deserialize(d).map(|_| Top::NotMap)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
        while seq.next_element_seed(Json::top(self.0))?.is_some() {}
        Ok(Top::NotMap)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut fields = Fields::default();
        // As in a map value, a key given twice keeps its last value.
        while let Some(key) = map.next_key_seed(StringKey(Key::of))? {
            // Unknown members are read as values too, held to the same shape.
            let at = At::Key(&At::Top, key.name());
            let value = map.next_value_seed(Json { at, refused: self.0 })?;
            let slot = match key {
                Key::Id => &mut fields.id,
                Key::Method => &mut fields.method,
                Key::Params => &mut fields.params,
                Key::Result => &mut fields.result,
                Key::Error => &mut fields.error,
                Key::Chunk => &mut fields.chunk,
                Key::Other(_) => continue,
            };
            *slot = Some(value);
        }
        Ok(Top::Map(fields))
    }
}

/// A top-level key.
enum Key {
    Id,
    Method,
    Params,
    Result,
    Error,
    Chunk,
    /// A key the protocol does not know, kept for a path naming a value under it.
    Other(String),
}

impl Key {
    fn of(key: &str) -> Self {
        match key {
            "id" => Key::Id,
            "method" => Key::Method,
            "params" => Key::Params,
            "result" => Key::Result,
            "error" => Key::Error,
            "chunk" => Key::Chunk,
            _ => Key::Other(key.to_owned()),
        }
    }

    fn name(&self) -> &str {
        match self {
            Key::Id => "id",
            Key::Method => "method",
            Key::Params => "params",
            Key::Result => "result",
            Key::Error => "error",
            Key::Chunk => "chunk",
            Key::Other(key) => key,
        }
    }
}
