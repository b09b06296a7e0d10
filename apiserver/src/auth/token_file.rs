//! The static tokens as the apiserver holds them: `--token-auth-file`, read again when it
//! changes (looked at no more than once a second, on a request), so a node added to a
//! running deployment (`flotilla deploy init` writes its token) authenticates without a
//! restart, and a token taken out of the file stops working within about a second.
//! kube-apiserver reads the file at start only; a file that no longer parses keeps the
//! tokens read last (and says why once per change).

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use super::{Tokens, User};

/// How often the file's modification time is looked at, at most.
const RECHECK: Duration = Duration::from_secs(1);

pub struct TokenFile {
    /// None: the tokens never change (generated, or given in memory).
    path: Option<PathBuf>,
    state: RwLock<State>,
}

struct State {
    tokens: Tokens,
    /// The file's modification time and length when last read.
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
}

fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let md = std::fs::metadata(path).ok()?;
    Some((md.modified().ok()?, md.len()))
}

impl TokenFile {
    /// Fixed tokens.
    pub fn fixed(tokens: Tokens) -> TokenFile {
        TokenFile {
            path: None,
            state: RwLock::new(State {
                tokens,
                stamp: None,
                checked: Instant::now(),
            }),
        }
    }

    /// The file at `path`, read now (an error refuses the start).
    pub fn load(path: PathBuf) -> Result<TokenFile, String> {
        let stamp = stamp(&path);
        let tokens = Tokens::from_file(&path)?;
        Ok(TokenFile {
            path: Some(path),
            state: RwLock::new(State {
                tokens,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// Reads the file again if it changed and the last look is more than [`RECHECK`] ago.
    fn refresh(&self) {
        let Some(path) = &self.path else { return };
        {
            let s = self.state.read().unwrap_or_else(|e| e.into_inner());
            if s.checked.elapsed() < RECHECK {
                return;
            }
        }
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        if s.checked.elapsed() < RECHECK {
            return;
        }
        s.checked = Instant::now();
        let now = stamp(path);
        if now == s.stamp {
            return;
        }
        s.stamp = now;
        match Tokens::from_file(path) {
            Ok(t) => {
                tracing::info!(file = %path.display(), "static tokens read again");
                s.tokens = t;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the token file changed but cannot be read; keeping the tokens read last");
            }
        }
    }

    /// The user a bearer token names, if it is a static token.
    pub fn lookup(&self, token: &str) -> Option<User> {
        self.refresh();
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        s.tokens.lookup(token).cloned()
    }

    /// The admin token (the first system:masters user's), as read last.
    pub fn admin_token(&self) -> Option<String> {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        s.tokens.admin_token().map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_one_ignored() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("tokens.csv");
        std::fs::write(&path, "t1,alice,1,\"system:masters\"\n").unwrap();
        let f = TokenFile::load(path.clone()).unwrap();
        assert_eq!(f.lookup("t1").unwrap().name, "alice");
        assert!(f.lookup("t2").is_none());
        std::fs::write(&path, "t1,alice,1,\"system:masters\"\nt2,bob,2\n").unwrap();
        // Looked at no more than once a second: force the next look.
        f.state.write().unwrap().checked = Instant::now() - RECHECK;
        assert_eq!(f.lookup("t2").unwrap().name, "bob");
        std::fs::write(&path, "t1,alice,1\nbroken line\n").unwrap();
        f.state.write().unwrap().checked = Instant::now() - RECHECK;
        assert_eq!(
            f.lookup("t2").unwrap().name,
            "bob",
            "the last good read stays"
        );
        std::fs::write(&path, "t2,bob,2\n").unwrap();
        f.state.write().unwrap().checked = Instant::now() - RECHECK;
        assert!(f.lookup("t1").is_none(), "a token taken out stops working");
        assert_eq!(f.admin_token(), None);
    }
}
