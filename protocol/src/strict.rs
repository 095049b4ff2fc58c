//! JSON-shaped values read strictly, from MessagePack frames ([`crate::codec`]) and from
//! JSON text ([`from_json`]) alike.
//!
//! Values are read as `serde_json` reads a [`Value`], with two differences on purpose:
//! - a map's keys must be strings, wherever the map (`serde_json` takes UTF-8 binary for
//!   the keys after a map's first);
//! - the key [`RESERVED_KEY`] is refused wherever it is: with its `raw_value` feature,
//!   which axum turns on in the kernel's build, `serde_json` parses the string under it
//!   as JSON text, so a map holding it would not read back as itself from the journal or
//!   the database.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::{Map, Value};

/// Parses JSON text into a value, strictly: a map holding [`RESERVED_KEY`] is refused.
pub fn from_json(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Json.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// A JSON-shaped value, as `serde_json` reads a [`Value`] but for map keys, which must be
/// strings other than [`RESERVED_KEY`].
pub(crate) struct Json;

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
pub(crate) struct StringKey<T>(pub(crate) fn(&str) -> T);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_text_reads_as_serde_json_reads_it_but_for_the_reserved_key() {
        let text = r#"{"b": [1, -2, 2.5, "x", null, true], "a": {"c": {}}}"#;
        assert_eq!(from_json(text).unwrap(), serde_json::from_str::<Value>(text).unwrap());
        // The nearest double, not one a step off (serde_json's default parse gives
        // 5.756165480829174e-96 for this).
        let f = 5.756_165_480_829_173_5e-96_f64;
        assert_eq!(from_json(&f.to_string()).unwrap().as_f64(), Some(f));
        assert!(from_json("{} x").is_err(), "trailing text");
        assert!(from_json("{").is_err());
        for text in [
            r#"{"$serde_json::private::RawValue": "[1]"}"#,
            r#"{"a": 1, "$serde_json::private::RawValue": 5}"#,
            r#"[{"a": {"z": 1, "$serde_json::private::RawValue": "1"}}]"#,
        ] {
            let e = from_json(text).unwrap_err().to_string();
            assert!(e.contains("reserved"), "{text}: {e}");
        }
    }
}
