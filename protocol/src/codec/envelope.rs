//! Reading a frame's top-level map straight into the members that classify a message,
//! without building a map value for it first: only the members' values are [`Value`]s.
//!
//! Values are read as `serde_json` reads a [`Value`], with two differences on purpose: a
//! map's keys must be strings, wherever the map (`serde_json` takes UTF-8 binary for the
//! keys after a map's first), and the key [`RESERVED_KEY`] is refused wherever it is
//! (with its `raw_value` feature, which axum turns on in the kernel's build, `serde_json`
//! parses the string under it as JSON text, so such a map would not read back as itself).
//! So binary and extension values, non-string keys and the reserved key are refused
//! anywhere in the frame, as docs/protocol.md §2 says; the tests compare this reader with
//! reading the whole frame as one [`Value`] on arbitrary bytes.

use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::message::Fields;
use crate::{Map, Value};

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
        Json.deserialize(d).map(|_| Top::NotMap)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
        while seq.next_element_seed(Json)?.is_some() {}
        Ok(Top::NotMap)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut fields = Fields::default();
        // As in a map value, a key given twice keeps its last value.
        while let Some(key) = map.next_key_seed(StringKey(Key::of))? {
            // Unknown members are read as values too, held to the same shape.
            let value = map.next_value_seed(Json)?;
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

/// A JSON-shaped value, as `serde_json` reads a [`Value`] but for map keys, which must be
/// strings.
struct Json;

impl<'de> DeserializeSeed<'de> for Json {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    /// NaN and the infinities have no JSON form: null, as `serde_json` reads them.
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Json.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Json)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key_seed(StringKey(str::to_owned))? {
            members.insert(key, map.next_value_seed(Json)?);
        }
        Ok(Value::Object(members))
    }
}

/// The key `serde_json` gives a meaning of its own (with its `raw_value` feature, which
/// axum turns on in the kernel's build): a map holding it would not read back as itself
/// from the journal or the database, so no frame may carry it.
pub const RESERVED_KEY: &str = "$serde_json::private::RawValue";

/// A map key: a string, never binary, made into a `T` by the function it holds.
struct StringKey<T>(fn(&str) -> T);

impl<'de, T> DeserializeSeed<'de> for StringKey<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_str(self)
    }
}

impl<T> Visitor<'_> for StringKey<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<T, E> {
        if key == RESERVED_KEY {
            return Err(E::custom(format_args!("the key `{RESERVED_KEY}` is reserved")));
        }
        Ok((self.0)(key))
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
    Other,
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
            _ => Key::Other,
        }
    }
}
