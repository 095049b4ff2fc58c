//! JSON-shaped values read strictly, from MessagePack frames ([`crate::codec`]) and from
//! JSON text ([`from_json`]) alike.
//!
//! Values are read as `serde_json` reads a [`Value`], with three differences on purpose:
//! - a map's keys must be strings, wherever the map (`serde_json` takes UTF-8 binary for
//!   the keys after a map's first);
//! - the key [`RESERVED_KEY`] is refused wherever it is: with its `raw_value` feature,
//!   which axum turns on in the kernel's build, `serde_json` parses the string under it
//!   as JSON text, so a map holding it would not read back as itself from the journal or
//!   the database;
//! - a float that is NaN or infinite is refused wherever it is, naming where it was:
//!   `serde_json` reads it as null, so a value holding one would be stored and forwarded
//!   changed. The read goes on to the end (so that a frame's id and kind are still
//!   known) with a stand-in for the float, and the caller refuses the whole value
//!   ([`Refused`]);
//! - a value may hold at most [`MAX_VALUE_UNITS`] units, a unit for every value and
//!   [`MAP_UNITS`] more for every map: a few bytes of tiny values or maps read into many
//!   times their size in memory (a map is a tree node of some 600 bytes), so a frame or a
//!   line is refused before it can (see docs/protocol.md §2).

use std::cell::OnceCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::{Map, Value};

/// Parses JSON text into a value, strictly: a map holding [`RESERVED_KEY`] is refused, and
/// so is a number out of a double's range (`1e400`), which `serde_json` refuses itself
/// (as it refuses `NaN` and `Infinity`, which are not JSON).
pub fn from_json(text: &str) -> Result<Value, serde_json::Error> {
    let refused = Refused::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Json::top(&refused).deserialize(&mut de)?;
    de.end()?;
    match refused.into_inner() {
        // Not reached with `serde_json` as it is: it never hands a non-finite float over.
        Some(found) => Err(de::Error::custom(found)),
        None => Ok(value),
    }
}

/// A float with no JSON form (NaN or an infinity), and where it was.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NotFinite {
    /// From the top of the value down to the float.
    pub(crate) path: Vec<Step>,
    /// `NaN`, `inf` or `-inf`.
    pub(crate) float: &'static str,
}

impl fmt::Display for NotFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at `{}`: {NOT_FINITE}", self.float, render(&self.path))
    }
}

/// Why a non-finite float is refused, for the messages that name one.
pub(crate) const NOT_FINITE: &str = "a number must be finite (JSON has no NaN or infinity)";

/// One step of a path into a value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// The member of a map under this key.
    Key(String),
    /// The item of an array at this position.
    Index(usize),
}

/// A path as docs/protocol.md §3 writes `data.field`: keys joined by dots, positions in
/// brackets (`metadata.tags[2].v`).
pub(crate) fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) if out.is_empty() => out.push_str(key),
            Step::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Most units one value read may hold: one a value, [`MAP_UNITS`] more a map. At 32
/// bytes a unit, about 64 MiB in memory.
pub const MAX_VALUE_UNITS: usize = 2_000_000;
/// The units a map costs beyond its own as a value.
pub const MAP_UNITS: usize = 19;

/// What a read met that refuses the value: the first non-finite float, if any (the value
/// holds a stand-in for it), and the units it has left.
#[derive(Debug)]
pub(crate) struct Refused(OnceCell<NotFinite>, std::cell::Cell<usize>);

impl Default for Refused {
    fn default() -> Self {
        Refused(OnceCell::new(), std::cell::Cell::new(MAX_VALUE_UNITS))
    }
}

impl Refused {
    /// Spends `units` of the value's budget; an error once none is left.
    fn spend<E: de::Error>(&self, units: usize) -> Result<(), E> {
        match self.1.get().checked_sub(units) {
            Some(left) => {
                self.1.set(left);
                Ok(())
            }
            None => Err(E::custom(format_args!(
                "the value holds too many values and maps (more than {MAX_VALUE_UNITS} units: one a value, {} a map)",
                MAP_UNITS + 1
            ))),
        }
    }

    /// Notes a non-finite float at `at`, unless one came before.
    fn note(&self, at: &At<'_>, f: f64) {
        if self.0.get().is_some() {
            return;
        }
        let float = if f.is_nan() {
            "NaN"
        } else if f > 0.0 {
            "inf"
        } else {
            "-inf"
        };
        let _ = self.0.set(NotFinite { path: at.steps(), float });
    }

    /// The first non-finite float met.
    pub(crate) fn into_inner(self) -> Option<NotFinite> {
        self.0.into_inner()
    }
}

/// Where the value being read sits, from the top: links on the stack, one per level,
/// made into a [`Step`] list only when a float is refused.
#[derive(Clone, Copy)]
pub(crate) enum At<'a> {
    /// The top of the value.
    Top,
    /// Under `key` in the map at the first.
    Key(&'a At<'a>, &'a str),
    /// At a position in the array at the first.
    Index(&'a At<'a>, usize),
}

impl At<'_> {
    fn steps(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut at = self;
        loop {
            match at {
                At::Top => break,
                At::Key(up, key) => {
                    steps.push(Step::Key((*key).to_owned()));
                    at = up;
                }
                At::Index(up, i) => {
                    steps.push(Step::Index(*i));
                    at = up;
                }
            }
        }
        steps.reverse();
        steps
    }
}

/// A JSON-shaped value, as `serde_json` reads a [`Value`] but for map keys, which must be
/// strings other than [`RESERVED_KEY`], and non-finite floats, which are noted in
/// [`Refused`] (the value holds null in their place).
pub(crate) struct Json<'a> {
    /// Where the value sits.
    pub(crate) at: At<'a>,
    /// Where a non-finite float is noted.
    pub(crate) refused: &'a Refused,
}

impl<'a> Json<'a> {
    /// The value at the top.
    pub(crate) fn top(refused: &'a Refused) -> Self {
        Json { at: At::Top, refused }
    }
}

impl<'de> DeserializeSeed<'de> for Json<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.refused.spend(1)?;
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Json<'_> {
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

    /// NaN and the infinities have no JSON form: noted, with null as a stand-in (the
    /// value is refused as a whole). A MessagePack float32 comes here too, widened.
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        if let Some(n) = serde_json::Number::from_f64(f) {
            return Ok(Value::Number(n));
        }
        self.refused.note(&self.at, f);
        Ok(Value::Null)
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
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let at = At::Index(&self.at, items.len());
            let Some(item) = seq.next_element_seed(Json { at, refused: self.refused })? else {
                break;
            };
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.refused.spend(MAP_UNITS)?;
        let mut members = Map::new();
        while let Some(key) = map.next_key_seed(StringKey(str::to_owned))? {
            let at = At::Key(&self.at, &key);
            let value = map.next_value_seed(Json { at, refused: self.refused })?;
            members.insert(key, value);
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

    /// JSON text cannot carry NaN or an infinity: `serde_json` refuses the literals that
    /// some writers use for them and numbers out of a double's range, rather than reading
    /// them as null or as an infinity.
    #[test]
    fn json_text_with_a_number_out_of_range_or_not_a_number_is_refused() {
        for (text, why) in [
            (r#"{"v": 1e400}"#, "out of range"),
            (r#"{"v": [1, -1e400]}"#, "out of range"),
            (r#"{"a": {"b": 123e999}}"#, "out of range"),
            (r#"{"v": NaN}"#, "expected value"),
            (r#"{"v": Infinity}"#, "expected value"),
            (r#"{"v": -Infinity}"#, "invalid number"),
        ] {
            let e = from_json(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
        // The largest double and a number under the smallest (to the nearest double, 0)
        // are in range.
        assert_eq!(from_json("1.7976931348623157e308").unwrap().as_f64(), Some(f64::MAX));
        assert_eq!(from_json("1e-400").unwrap().as_f64(), Some(0.0));
    }

    #[test]
    fn paths_are_written_as_data_field_writes_them() {
        let path = [
            Step::Key("metadata".into()),
            Step::Key("tags".into()),
            Step::Index(2),
            Step::Index(0),
            Step::Key("v".into()),
        ];
        assert_eq!(render(&path), "metadata.tags[2][0].v");
        assert_eq!(render(&[Step::Index(1), Step::Key("a".into())]), "[1].a");
        assert_eq!(render(&[]), "");
    }

    /// Every non-finite float is noted where it is, the first one only; the value read
    /// holds null in its place, and is to be refused.
    #[test]
    fn a_non_finite_float_is_noted_with_its_path() {
        use rmpv::Value as Mp;
        let read = |v: &Mp| {
            let mut body = Vec::new();
            rmpv::encode::write_value(&mut body, v).unwrap();
            let refused = Refused::default();
            let mut de = rmp_serde::Deserializer::new(&body[..]);
            let value = Json::top(&refused).deserialize(&mut de).unwrap();
            (value, refused.into_inner().map(|nf| nf.to_string()))
        };
        let nested = |float: Mp| {
            Mp::Map(vec![(
                Mp::from("a"),
                Mp::Array(vec![Mp::from(1), Mp::Map(vec![(Mp::from("b"), float)])]),
            )])
        };
        for (float, name) in [
            (Mp::F64(f64::NAN), "NaN"),
            (Mp::F64(f64::INFINITY), "inf"),
            (Mp::F64(f64::NEG_INFINITY), "-inf"),
            (Mp::F32(f32::NAN), "NaN"),
            (Mp::F32(f32::INFINITY), "inf"),
            (Mp::F32(f32::NEG_INFINITY), "-inf"),
        ] {
            let (value, found) = read(&nested(float));
            assert_eq!(value, serde_json::json!({"a": [1, {"b": null}]}), "{name}");
            assert_eq!(found.as_deref(), Some(&*format!("{name} at `a[1].b`: {NOT_FINITE}")));
        }
        let two = Mp::Array(vec![Mp::F64(1.5), Mp::F64(f64::NEG_INFINITY), Mp::F32(f32::NAN)]);
        assert_eq!(read(&two).1.as_deref(), Some(&*format!("-inf at `[1]`: {NOT_FINITE}")));
        let (value, found) = read(&Mp::Array(vec![Mp::F64(-0.0), Mp::F32(1e38), Mp::F64(1e308)]));
        assert_eq!((value, found), (serde_json::json!([-0.0, f64::from(1e38_f32), 1e308]), None));
    }

    #[test]
    fn a_value_of_too_many_values_or_maps_is_refused() {
        // The array itself is a value too.
        let values = |n: usize, item: &str| format!("[{}]", vec![item; n].join(","));
        assert!(from_json(&values(MAX_VALUE_UNITS - 1, "0")).is_ok());
        let e = from_json(&values(MAX_VALUE_UNITS, "0")).unwrap_err().to_string();
        assert!(e.contains("too many values"), "{e}");
        let maps = MAX_VALUE_UNITS / (MAP_UNITS + 1);
        assert!(from_json(&values(maps - 1, "{}")).is_ok());
        let e = from_json(&values(maps, "{}")).unwrap_err().to_string();
        assert!(e.contains("too many values"), "{e}");
        // The same bound in a frame: refused, the id read.
        let frame = crate::codec::encode_frame(
            &crate::Message::request(7u64, "m", serde_json::json!({"v": vec![0; MAX_VALUE_UNITS]})),
            64 << 20,
        )
        .unwrap();
        let (decoded, _) = crate::codec::decode_frame(&frame, 64 << 20).expect("a whole frame");
        let err = decoded.expect_err("refused");
        assert!(err.to_string().contains("too many values"), "{err}");
    }
}
