#!/usr/bin/env python3
"""Writes apiserver/src/protobuf/schema.txt: for every Kubernetes protobuf message the
apiserver decodes, its fields as `tag json-name type [r]`.

Field numbers come from the k8s-pb crate (prost code generated from Kubernetes'
generated.proto files); JSON names from the k8s-openapi crate (its serde field names), both
read from the local cargo registry. Run after changing either crate's version:

    scripts/gen-protobuf-schema.py > apiserver/src/protobuf/schema.txt
"""
import glob, os, re, sys

reg = os.path.expanduser("~/.cargo/registry/src")
pb = sorted(glob.glob(f"{reg}/*/k8s-pb-0.9.0/src"))[0]
oa = sorted(glob.glob(f"{reg}/*/k8s-openapi-0.29.0/src/v1_33"))[0]

MODULES = {
    "core.v1": "api/core/v1",
    "apps.v1": "api/apps/v1",
    "batch.v1": "api/batch/v1",
    "coordination.v1": "api/coordination/v1",
    "authentication.v1": "api/authentication/v1",
    "authorization.v1": "api/authorization/v1",
    "rbac.v1": "api/rbac/v1",
    "policy.v1": "api/policy/v1",
    "autoscaling.v1": "api/autoscaling/v1",
    "autoscaling.v2": "api/autoscaling/v2",
    "meta.v1": "apimachinery/pkg/apis/meta/v1",
    "resource": "apimachinery/pkg/api/resource",
    "intstr": "apimachinery/pkg/util/intstr",
    "runtime": "apimachinery/pkg/runtime",
}
BY_PATH = {v.replace("/", "::"): k for k, v in MODULES.items()}

def norm(name):
    return name.replace("r#", "").rstrip("_")

def json_names(mod_dir):
    """(struct, rust field) -> JSON name, from k8s-openapi's deserializers."""
    out = {}
    for f in glob.glob(f"{oa}/{mod_dir}/*.rs"):
        text = open(f).read()
        m = re.search(r"pub struct (\w+)", text)
        if not m:
            continue
        for j, r in re.findall(r'"([A-Za-z0-9_$.-]+)" => Field::Key_(\w+)', text):
            out[(m.group(1), norm(r))] = j
    return out

def flatten(body):
    """Joins what rustfmt split over lines inside (), <> and [] so each field is one line."""
    body = "\n".join(l for l in body.split("\n") if not l.strip().startswith("//"))
    out, depth = [], 0
    for c in body:
        if c in "(<[":
            depth += 1
        elif c in ")>]":
            depth -= 1
        if c == "\n" and depth > 0:
            continue
        out.append(c)
    return re.sub(r"[ \t]+", " ", "".join(out))

def resolve(ty, here):
    ty = ty.strip().replace("::core::option::Option<", "").replace("::prost::alloc::vec::Vec<", "").rstrip(">")
    parts = ty.split("::")
    name = parts[-1]
    path = [p for p in parts[:-1] if p not in ("super", "")]
    if not path:
        return f"{here}.{name}"
    key = "::".join(path)
    for p, m in BY_PATH.items():
        if p.endswith(key):
            return f"{m}.{name}"
    return None

for mod, d in MODULES.items():
    src = open(f"{pb}/{d}/mod.rs").read()
    names = json_names(d)
    for sm in re.finditer(r"pub struct (\w+) \{(.*?)\n\}", src, re.S):
        struct, body = sm.group(1), flatten(sm.group(2))
        fields = []
        for attr, fname, fty in re.findall(r"#\[prost\((.*?)\)\]\s*pub (\w+|r#\w+):\s*([^\n]*),", body):
            tag = re.search(r'tag = "(\d+)"', attr).group(1)
            json = names.get((struct, norm(fname)))
            if json is None:
                # k8s-pb splits some names k8s-openapi keeps whole (u_id for uID: uid).
                json = names.get((struct, norm(fname).replace("_", "")))
            if json is None:
                json = norm(fname)  # messages k8s-openapi does not model (Unknown, TypeMeta)
                json = re.sub(r"_(\w)", lambda m: m.group(1).upper(), json)
            rep = " r" if "repeated" in attr else ""
            mm = re.search(r'(?:btree_)?map = "string, (\w+)"', attr)
            if mm:
                v = mm.group(1)
                if v == "message":
                    v = "m:" + (resolve(re.findall(r"[\w:]+", fty)[-1], mod) or "?")
                fields.append(f"{tag} {json} map:{v}")
                continue
            kind = attr.split(",")[0].strip()
            if kind == "message":
                t = resolve(fty, mod)
                if t is None:
                    print(f"# unresolved {mod}.{struct}.{fname}: {fty}", file=sys.stderr)
                    continue
                kind = "m:" + t
            elif kind.startswith("bytes"):
                kind = "bytes"
            fields.append(f"{tag} {json} {kind}{rep}")
        print(f"{mod}.{struct}")
        for f in fields:
            print(f"  {f}")
