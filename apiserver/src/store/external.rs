//! External admission (webhooks) in a write: mutating after the built-in mutating
//! plugins, validating after the kind's validation and the built-in validating plugins.
//! What a mutating webhook changed is normalized as a client's body would be: decoded
//! again (a typed kind's defaults; a custom resource's pruning and defaults), with what
//! only the server sets kept (uid, creation time, generation rules, the status of an
//! object write, everything but the status of a status write), then prepared again and,
//! on an update, validated again (a create validates after this anyway).

use serde_json::Value;

use super::{Attributes, Target, Write};
use crate::error::ApiError;

/// Metadata only the server sets (an update's, and what a write records), kept whatever
/// a webhook returns.
fn server_owned() -> impl Iterator<Item = &'static str> {
    super::update::SERVER_OWNED
        .iter()
        .copied()
        .chain(["resourceVersion", "managedFields"])
}

impl Write {
    fn attributes<'a>(
        &'a self,
        operation: &'static str,
        t: &'a Target,
        name: &'a str,
        sub: Option<&'a str>,
        old: Option<&'a Value>,
    ) -> Attributes<'a> {
        Attributes {
            operation,
            target: t,
            name,
            sub,
            old,
            dry_run: self.dry_run,
            warnings: &self.warnings,
        }
    }

    /// Mutating webhooks on a create (`old` None) or an update of `old`; the object
    /// is left normalized and prepared again if one changed it.
    pub(super) async fn external_mutate(
        &self,
        t: &Target,
        sub: Option<&str>,
        old: Option<&Value>,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        let Some(x) = &self.external else {
            return Ok(());
        };
        let before = obj.clone();
        let name = before["metadata"]["name"].as_str().unwrap_or("");
        let op = if old.is_some() { "UPDATE" } else { "CREATE" };
        x.mutate(self.attributes(op, t, name, sub, old), obj)
            .await?;
        if *obj == before {
            return Ok(());
        }
        let info = t.kind.info();
        let mut changed = if sub == Some("status") {
            // A status write changes the status only.
            let mut r = before.clone();
            r["status"] = obj["status"].clone();
            r
        } else {
            let mut r = obj.clone();
            if info.status {
                match before.get("status") {
                    Some(s) => r["status"] = s.clone(),
                    None => {
                        if let Some(m) = r.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            r
        };
        for f in server_owned() {
            match before["metadata"].get(f) {
                Some(v) => changed["metadata"][f] = v.clone(),
                None => {
                    if let Some(m) = changed["metadata"].as_object_mut() {
                        m.remove(f);
                    }
                }
            }
        }
        // Decoded as the request's version is (a custom resource's stored version is
        // set again by its decode).
        changed["apiVersion"] = info.api_version().into();
        changed["kind"] = info.kind.into();
        let mut decoded = t
            .kind
            .decode(&serde_json::to_vec(&changed).unwrap_or_default())?;
        for f in server_owned() {
            if let Some(v) = changed["metadata"].get(f) {
                decoded["metadata"][f] = v.clone();
            }
        }
        match old {
            None => t.kind.prepare_create(&mut decoded)?,
            Some(old) => {
                t.kind.prepare_update(&mut decoded, old)?;
                if info.generation && decoded["spec"] != old["spec"] {
                    let g = old["metadata"]["generation"].as_i64().unwrap_or(0);
                    decoded["metadata"]["generation"] = g.saturating_add(1).into();
                }
            }
        }
        // A create validates what it stores next; an update decided before the webhooks
        // ran, so it validates here.
        if old.is_some() {
            t.kind.validate(&decoded, old)?;
        }
        *obj = decoded;
        Ok(())
    }

    /// Validating webhooks on the object as it will be stored.
    pub(super) async fn external_validate(
        &self,
        t: &Target,
        sub: Option<&str>,
        old: Option<&Value>,
        obj: &Value,
    ) -> Result<(), ApiError> {
        let Some(x) = &self.external else {
            return Ok(());
        };
        let name = obj["metadata"]["name"].as_str().unwrap_or("");
        let op = if old.is_some() { "UPDATE" } else { "CREATE" };
        x.validate(self.attributes(op, t, name, sub, old), obj)
            .await
    }
}
