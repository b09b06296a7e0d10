//! What the shipper sends, built purely: log lines with their labels grouped into one
//! Loki push request (`POST /loki/api/v1/push`, JSON: `{"streams": [{"stream": {labels},
//! "values": [["<unix ns>", "<line>"], ...]}]}`), one stream per container, its entries in
//! the order they were logged.

use std::collections::BTreeMap;

use jiff::Timestamp;

/// The labels of a container's stream: namespace, pod, container and node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Labels {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub node: String,
}

/// One line of a container's log.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub time: Timestamp,
    pub line: String,
}

/// A line of the runtime's log stream with timestamps (`<RFC 3339 time> <text>`), as
/// both runtimes write it; `None` when it does not start with a time.
pub fn parse_timestamped(line: &[u8]) -> Option<Entry> {
    let sp = line.iter().position(|b| *b == b' ');
    let (time, text) = match sp {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[][..]),
    };
    let time: Timestamp = std::str::from_utf8(time).ok()?.parse().ok()?;
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    Some(Entry {
        time,
        line: String::from_utf8_lossy(text).into_owned(),
    })
}

/// Lines of many containers collected for one push, each stream's in order.
#[derive(Debug, Default)]
pub struct Batch {
    streams: BTreeMap<Labels, Vec<Entry>>,
    /// The lines' bytes, the measure of a batch's size.
    bytes: usize,
    lines: usize,
}

impl Batch {
    pub fn push(&mut self, labels: &Labels, e: Entry) {
        self.bytes = self.bytes.saturating_add(e.line.len());
        self.lines += 1;
        match self.streams.get_mut(labels) {
            Some(v) => v.push(e),
            None => {
                self.streams.insert(labels.clone(), vec![e]);
            }
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn lines(&self) -> usize {
        self.lines
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// The push request's body.
    pub fn body(&self) -> Vec<u8> {
        let streams: Vec<serde_json::Value> = self
            .streams
            .iter()
            .map(|(l, entries)| {
                let values: Vec<[String; 2]> = entries
                    .iter()
                    .map(|e| [e.time.as_nanosecond().to_string(), e.line.clone()])
                    .collect();
                serde_json::json!({
                    "stream": {
                        "namespace": l.namespace,
                        "pod": l.pod,
                        "container": l.container,
                        "node": l.node,
                    },
                    "values": values,
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "streams": streams })).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_times() {
        let e = parse_timestamped(b"2026-12-06T02:31:09.123456789Z hello world\r").unwrap();
        assert_eq!(e.line, "hello world");
        assert_eq!(e.time.as_nanosecond(), 1_796_524_269_123_456_789);
        assert_eq!(
            parse_timestamped(b"2026-12-06T02:31:09Z").unwrap().line,
            "",
            "an empty line"
        );
        assert_eq!(parse_timestamped(b"not a time at all"), None);
        let bad_utf8 = parse_timestamped(b"2026-12-06T02:31:09Z \xff!").unwrap();
        assert_eq!(bad_utf8.line, "\u{fffd}!");
    }

    #[test]
    fn one_stream_per_container_in_order() {
        let l = |pod: &str| Labels {
            namespace: "ns".into(),
            pod: pod.into(),
            container: "c".into(),
            node: "n0".into(),
        };
        let at = |s: i64| Timestamp::from_second(s).unwrap();
        let mut b = Batch::default();
        b.push(
            &l("b"),
            Entry {
                time: at(2),
                line: "b1".into(),
            },
        );
        b.push(
            &l("a"),
            Entry {
                time: at(1),
                line: "a1".into(),
            },
        );
        b.push(
            &l("b"),
            Entry {
                time: at(3),
                line: "b2\"".into(),
            },
        );
        assert_eq!((b.lines(), b.bytes()), (3, 7));
        let v: serde_json::Value = serde_json::from_slice(&b.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"streams": [
                {"stream": {"namespace": "ns", "pod": "a", "container": "c", "node": "n0"},
                 "values": [["1000000000", "a1"]]},
                {"stream": {"namespace": "ns", "pod": "b", "container": "c", "node": "n0"},
                 "values": [["2000000000", "b1"], ["3000000000", "b2\""]]},
            ]})
        );
    }
}
