//! Static bearer tokens: kube-apiserver's token file (`token,user,uid,"group1,group2"`),
//! or, without one, an admin token kept in `--cert-dir/tokens.csv` (created once, so
//! apiservers sharing the directory share it).

use std::collections::HashMap;
use std::path::Path;

use super::{User, AUTHENTICATED};

#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_token: HashMap<String, User>,
    /// A token for the kubeconfig this process writes (the first system:masters user).
    admin: Option<String>,
}

/// 40 random letters and digits.
pub fn random_token() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect()
}

/// Splits one CSV line, honouring double quotes.
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().map(|f| f.push('"'));
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => {
                out.last_mut().map(|f| f.push(c));
            }
        }
    }
    out.into_iter().map(|f| f.trim().to_string()).collect()
}

impl Tokens {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut t = Tokens::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f = csv_fields(line);
            if f.len() < 3 || f[0].is_empty() || f[1].is_empty() {
                return Err(format!("line {}: want token,user,uid[,\"groups\"]", i + 1));
            }
            let groups: Vec<String> = f
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            if t.admin.is_none() && groups.iter().any(|g| g == "system:masters") {
                t.admin = Some(f[0].clone());
            }
            let mut groups = groups;
            // Everyone who authenticates is in this group (kube's group adder).
            groups.push(AUTHENTICATED.to_string());
            t.by_token.insert(
                f[0].clone(),
                User {
                    name: f[1].clone(),
                    uid: f[2].clone(),
                    groups,
                },
            );
        }
        Ok(t)
    }

    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--token-auth-file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("--token-auth-file {}: {e}", path.display()))
    }

    /// The admin token file in `dir`, created with a random token if missing.
    pub fn generated(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join("tokens.csv");
        if !path.exists() {
            let token = random_token();
            let line = format!("{token},admin,admin,\"system:masters\"\n");
            let tmp = dir.join(format!(".tokens.csv.{}", std::process::id()));
            std::fs::write(&tmp, line).map_err(|e| format!("{}: {e}", tmp.display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600));
            }
            // Another apiserver may have written it meanwhile: theirs wins.
            let _ = std::fs::hard_link(&tmp, &path);
            let _ = std::fs::remove_file(&tmp);
        }
        Self::from_file(&path)
    }

    /// The token of the user called `name`, if it has one.
    pub fn token_of(&self, name: &str) -> Option<&str> {
        self.by_token
            .iter()
            .find(|(_, u)| u.name == name)
            .map(|(t, _)| t.as_str())
    }

    pub fn admin_token(&self) -> Option<&str> {
        self.admin.as_deref()
    }

    /// The user a bearer token names, if it is one of these.
    pub fn lookup(&self, token: &str) -> Option<&User> {
        self.by_token.get(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_token_file() {
        let t =
            Tokens::parse("# comment\nabc,alice,1,\"system:masters,dev\"\nxyz,bob,2\n").unwrap();
        let a = t.lookup("abc").unwrap();
        assert_eq!(a.name, "alice");
        assert_eq!(a.groups, ["system:masters", "dev", "system:authenticated"]);
        assert_eq!(t.admin_token(), Some("abc"));
        assert_eq!(t.lookup("xyz").unwrap().name, "bob");
        assert_eq!(t.token_of("bob"), Some("xyz"));
        assert!(t.lookup("nope").is_none());
        assert!(Tokens::parse("onlytoken\n").is_err());
    }

    #[test]
    fn generated_token_is_shared_through_the_directory() {
        let d = tempfile::tempdir().unwrap();
        let a = Tokens::generated(d.path()).unwrap();
        let b = Tokens::generated(d.path()).unwrap();
        assert_eq!(a.admin_token(), b.admin_token());
        assert!(a.admin_token().unwrap().len() >= 32);
    }
}
