//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), turned into
//! the JSON the rest of the apiserver handles. client-go's typed clients send them; kubectl
//! uses one for its `create namespace|configmap|secret|deployment|service|job...` generators.
//!
//! The envelope is `k8s\0` followed by a `runtime.Unknown` (typeMeta, raw); `raw` is the
//! object's message. Field numbers and JSON names per message are in `schema.txt`
//! (written by `scripts/gen-protobuf-schema.py`). Responses stay JSON: every client that
//! offers protobuf also accepts JSON.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use serde_json::{Map, Value};

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug, Clone)]
enum Ty {
    Str,
    Bool,
    I32,
    I64,
    Bytes,
    Msg(String),
    Map(Box<Ty>),
}

#[derive(Debug)]
struct Field {
    json: String,
    ty: Ty,
    repeated: bool,
}

type Schema = HashMap<String, HashMap<u64, Field>>;

fn parse_ty(s: &str) -> Option<Ty> {
    Some(match s {
        "string" => Ty::Str,
        "bool" => Ty::Bool,
        "int32" => Ty::I32,
        "int64" => Ty::I64,
        "bytes" => Ty::Bytes,
        _ => {
            if let Some(m) = s.strip_prefix("map:") {
                Ty::Map(Box::new(parse_ty(m)?))
            } else if let Some(m) = s.strip_prefix("m:") {
                Ty::Msg(m.to_string())
            } else {
                return None;
            }
        }
    })
}

fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| {
        let mut out: Schema = HashMap::new();
        let mut current = String::new();
        for line in include_str!("schema.txt").lines() {
            if !line.starts_with(' ') {
                current = line.trim().to_string();
                out.entry(current.clone()).or_default();
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (Some(tag), Some(json), Some(ty)) = (
                parts.first(),
                parts.get(1),
                parts.get(2).and_then(|t| parse_ty(t)),
            ) else {
                continue;
            };
            let Ok(tag) = tag.parse::<u64>() else {
                continue;
            };
            let repeated = parts.get(3) == Some(&"r");
            out.entry(current.clone()).or_default().insert(
                tag,
                Field {
                    json: json.to_string(),
                    ty,
                    repeated,
                },
            );
        }
        out
    })
}

/// One field as read off the wire.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.i).ok_or("truncated varint")?;
            self.i += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn next(&mut self) -> Result<Option<(u64, Wire<'a>)>, String> {
        if self.i >= self.b.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let (tag, wt) = (key >> 3, key & 7);
        let w = match wt {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.skip(8)?;
                Wire::Fixed
            }
            2 => {
                let n = self.varint()? as usize;
                let end = self
                    .i
                    .checked_add(n)
                    .filter(|e| *e <= self.b.len())
                    .ok_or("truncated field")?;
                let s = &self.b[self.i..end];
                self.i = end;
                Wire::Bytes(s)
            }
            5 => {
                self.skip(4)?;
                Wire::Fixed
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        Ok(Some((tag, w)))
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        if self.i + n > self.b.len() {
            return Err("truncated field".into());
        }
        self.i += n;
        Ok(())
    }
}

fn string(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "a string field is not UTF-8".to_string())
}

fn scalar(ty: &Ty, w: &Wire<'_>, depth: usize) -> Result<Value, String> {
    Ok(match (ty, w) {
        (Ty::Str, Wire::Bytes(b)) => Value::String(string(b)?),
        (Ty::Bool, Wire::Varint(v)) => Value::Bool(*v != 0),
        (Ty::I32, Wire::Varint(v)) => Value::from(*v as i64 as i32),
        (Ty::I64, Wire::Varint(v)) => Value::from(*v as i64),
        (Ty::Bytes, Wire::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Ty::Msg(name), Wire::Bytes(b)) => message(b, name, depth + 1)?,
        _ => return Err("a field has the wrong wire type".into()),
    })
}

/// Decodes message `name` into its JSON form.
fn message(b: &[u8], name: &str, depth: usize) -> Result<Value, String> {
    if depth > 64 {
        return Err("nested too deeply".into());
    }
    let mut r = Reader { b, i: 0 };
    let mut raw: HashMap<u64, Vec<Wire<'_>>> = HashMap::new();
    let special = matches!(
        name,
        "meta.v1.Time"
            | "meta.v1.MicroTime"
            | "resource.Quantity"
            | "intstr.IntOrString"
            | "meta.v1.FieldsV1"
            | "runtime.RawExtension"
    );
    if special {
        while let Some((tag, w)) = r.next()? {
            raw.entry(tag).or_default().push(w);
        }
        let int = |t: u64| match raw.get(&t).and_then(|v| v.last()) {
            Some(Wire::Varint(v)) => *v as i64,
            _ => 0,
        };
        let bytes = |t: u64| match raw.get(&t).and_then(|v| v.last()) {
            Some(Wire::Bytes(b)) => *b,
            _ => &[],
        };
        return Ok(match name {
            // A zero time is Go's unset time, null in JSON.
            "meta.v1.Time" | "meta.v1.MicroTime" if int(1) <= 0 => Value::Null,
            "meta.v1.Time" | "meta.v1.MicroTime" => {
                let ts = k8s_openapi::jiff::Timestamp::new(int(1), int(2) as i32)
                    .map_err(|e| e.to_string())?;
                if name == "meta.v1.Time" {
                    serde_json::to_value(Time(ts)).map_err(|e| e.to_string())?
                } else {
                    serde_json::to_value(MicroTime(ts)).map_err(|e| e.to_string())?
                }
            }
            "resource.Quantity" => Value::String(string(bytes(1))?),
            "intstr.IntOrString" => {
                if int(1) == 1 {
                    Value::String(string(bytes(3))?)
                } else {
                    Value::from(int(2) as i32)
                }
            }
            _ => {
                let b = bytes(1);
                if b.is_empty() {
                    Value::Object(Map::new())
                } else {
                    serde_json::from_slice(b).map_err(|e| format!("embedded JSON: {e}"))?
                }
            }
        });
    }
    let fields = schema()
        .get(name)
        .ok_or_else(|| format!("no protobuf schema for {name}"))?;
    let mut out = Map::new();
    while let Some((tag, w)) = r.next()? {
        let Some(f) = fields.get(&tag) else { continue };
        match &f.ty {
            Ty::Map(vt) => {
                let Wire::Bytes(entry) = w else {
                    return Err(format!("{name}.{}: a map entry must be a message", f.json));
                };
                let mut er = Reader { b: entry, i: 0 };
                let (mut k, mut v) = (String::new(), None);
                while let Some((t, ew)) = er.next()? {
                    match (t, &ew) {
                        (1, Wire::Bytes(b)) => k = string(b)?,
                        (2, _) => v = Some(scalar(vt, &ew, depth)?),
                        _ => {}
                    }
                }
                let v = v.unwrap_or_else(|| match **vt {
                    Ty::Str | Ty::Bytes => Value::String(String::new()),
                    _ => Value::Object(Map::new()),
                });
                let m = out
                    .entry(f.json.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(m) = m.as_object_mut() {
                    m.insert(k, v);
                }
            }
            ty => {
                let v = scalar(ty, &w, depth).map_err(|e| format!("{name}.{}: {e}", f.json))?;
                // Go writes every non-pointer field, zero or not; an empty string or an
                // unset time is what JSON leaves out. (Zero numbers and false are kept:
                // pointer fields such as replicas are written only when set, and 0 then
                // means 0.)
                if !f.repeated && (v.is_null() || v.as_str() == Some("")) {
                    continue;
                }
                if f.repeated {
                    let a = out
                        .entry(f.json.clone())
                        .or_insert_with(|| Value::Array(vec![]));
                    if let Some(a) = a.as_array_mut() {
                        a.push(v);
                    }
                } else {
                    out.insert(f.json.clone(), v);
                }
            }
        }
    }
    Ok(Value::Object(out))
}

/// The protobuf message that carries `kind` of `api_version`.
fn message_name(api_version: &str, kind: &str) -> Result<String, String> {
    if kind == "DeleteOptions" {
        return Ok("meta.v1.DeleteOptions".into());
    }
    let module = match api_version {
        "v1" => "core.v1",
        "apps/v1" => "apps.v1",
        "batch/v1" => "batch.v1",
        "coordination.k8s.io/v1" => "coordination.v1",
        "authentication.k8s.io/v1" => "authentication.v1",
        "authorization.k8s.io/v1" => "authorization.v1",
        "rbac.authorization.k8s.io/v1" => "rbac.v1",
        "policy/v1" => "policy.v1",
        "autoscaling/v1" => "autoscaling.v1",
        "autoscaling/v2" => "autoscaling.v2",
        other => return Err(format!("protobuf bodies of {other} are not served")),
    };
    Ok(format!("{module}.{kind}"))
}

/// The JSON of a protobuf request body.
pub fn to_json(body: &[u8]) -> Result<Vec<u8>, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("the body does not start with the k8s protobuf prefix")?;
    let mut r = Reader { b: rest, i: 0 };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    while let Some((tag, w)) = r.next()? {
        match (tag, w) {
            (1, Wire::Bytes(tm)) => {
                let mut t = Reader { b: tm, i: 0 };
                while let Some((tt, tw)) = t.next()? {
                    match (tt, tw) {
                        (1, Wire::Bytes(b)) => api_version = string(b)?,
                        (2, Wire::Bytes(b)) => kind = string(b)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let name = message_name(&api_version, &kind)?;
    let mut v = message(raw, &name, 0)?;
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), api_version.into());
        m.insert("kind".into(), kind.into());
    }
    serde_json::to_vec(&v).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn bytes_field(tag: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(tag << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }
    fn varint_field(tag: u64, v: u64, out: &mut Vec<u8>) {
        varint(tag << 3, out);
        varint(v, out);
    }

    /// A ConfigMap as client-go encodes it: name, labels, data, binaryData, immutable.
    #[test]
    fn a_configmap_decodes_to_its_json() {
        let mut label = Vec::new();
        bytes_field(1, b"app", &mut label);
        bytes_field(2, b"web", &mut label);
        let mut meta = Vec::new();
        bytes_field(1, b"cfg", &mut meta);
        bytes_field(11, &label, &mut meta);
        let mut obj = Vec::new();
        bytes_field(1, &meta, &mut obj);
        let mut entry = Vec::new();
        bytes_field(1, b"k", &mut entry);
        bytes_field(2, b"v", &mut entry);
        bytes_field(2, &entry, &mut obj);
        let mut bin = Vec::new();
        bytes_field(1, b"b", &mut bin);
        bytes_field(2, &[0, 255], &mut bin);
        bytes_field(3, &bin, &mut obj);
        varint_field(4, 1, &mut obj);
        let mut tm = Vec::new();
        bytes_field(1, b"v1", &mut tm);
        bytes_field(2, b"ConfigMap", &mut tm);
        let mut body = MAGIC.to_vec();
        let mut unknown = Vec::new();
        bytes_field(1, &tm, &mut unknown);
        bytes_field(2, &obj, &mut unknown);
        body.extend_from_slice(&unknown);
        let v: Value = serde_json::from_slice(&to_json(&body).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "cfg", "labels": { "app": "web" } },
                "data": { "k": "v" }, "binaryData": { "b": "AP8=" }, "immutable": true
            })
        );
    }

    #[test]
    fn special_messages_and_garbage() {
        let mut t = Vec::new();
        varint_field(1, 1_700_000_000, &mut t);
        assert_eq!(
            message(&t, "meta.v1.Time", 0).unwrap(),
            "2023-11-14T22:13:20Z"
        );
        let mut ios = Vec::new();
        varint_field(1, 1, &mut ios);
        bytes_field(3, b"25%", &mut ios);
        assert_eq!(message(&ios, "intstr.IntOrString", 0).unwrap(), "25%");
        let mut ioi = Vec::new();
        varint_field(2, 8080, &mut ioi);
        assert_eq!(message(&ioi, "intstr.IntOrString", 0).unwrap(), 8080);
        let mut q = Vec::new();
        bytes_field(1, b"100m", &mut q);
        assert_eq!(message(&q, "resource.Quantity", 0).unwrap(), "100m");
        assert!(to_json(b"nope").is_err());
        assert!(to_json(b"k8s\0\x0a\xff").is_err());
        let mut neg = Vec::new();
        varint_field(1, (-1i64) as u64, &mut neg);
        assert_eq!(
            message(&neg, "apps.v1.DeploymentSpec", 0).unwrap()["replicas"],
            -1
        );
        assert!(schema().len() > 300);
        // Go's always-written empty strings and zero times are what JSON omits.
        let mut meta = Vec::new();
        bytes_field(1, b"x", &mut meta);
        bytes_field(2, b"", &mut meta);
        bytes_field(8, &[], &mut meta);
        assert_eq!(
            message(&meta, "meta.v1.ObjectMeta", 0).unwrap(),
            serde_json::json!({ "name": "x" })
        );
    }
}
