//! How large values are as JSON text: the bounds of queues and pages that hold values
//! the host surfaces carry as JSON are counted in these bytes.

/// How many bytes `value` takes as JSON text, without writing it anywhere.
pub fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_value_counts_as_its_json_text() {
        let value = serde_json::json!({"a": [1, "é"], "b": "\"q\""});
        assert_eq!(super::json_len(&value), serde_json::to_string(&value).unwrap().len());
    }
}
