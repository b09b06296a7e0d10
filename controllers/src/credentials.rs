//! `--use-service-account-credentials`: each controller acts as its own ServiceAccount in
//! kube-system (kube's names: `deployment-controller`, `generic-garbage-collector`, ...),
//! which the apiserver's bootstrap policy binds to `system:controller:<account>`, as
//! kube-controller-manager does. The controller-manager's own identity only makes the
//! accounts and asks for their tokens (and runs the shared informers and the election).
//!
//! Contract: [`Credentials::client`] returns once the account exists and a token for it
//! was issued (it retries until then); the client it returns keeps a valid token while
//! the refresh future it returns with it runs: a new token is requested at 80% of the
//! last one's lifetime, and as soon as a check (every 15 s) finds the account deleted or
//! replaced (which revoked the token). The token is handed to kube-rs through a file in a private
//! directory (0700, the file 0600), which kube-rs reads again at least once a minute;
//! the directory is removed when the `Credentials` and every refresh future are gone (or,
//! if the process was killed first, by the next controller-manager of the same user).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use component_base::backoff::Backoff;
use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

/// Where the controllers' accounts live.
pub const NAMESPACE: &str = "kube-system";
/// The lifetime asked for each token (kube-apiserver's default).
const EXPIRATION_SECONDS: i64 = 3600;
/// How often the account is looked at between refreshes (a read per account: cheap).
const CHECK_PERIOD: Duration = Duration::from_secs(15);
/// The shortest wait before a refresh, whatever lifetime the apiserver granted.
const MIN_REFRESH: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading ServiceAccount {NAMESPACE}/{account}: {source}")]
    Read {
        account: &'static str,
        source: kube::Error,
    },
    #[error("creating ServiceAccount {NAMESPACE}/{account}: {source}")]
    Create {
        account: &'static str,
        source: kube::Error,
    },
    #[error("requesting a token for ServiceAccount {NAMESPACE}/{account}: {source}")]
    Token {
        account: &'static str,
        source: kube::Error,
    },
    #[error("the TokenRequest for ServiceAccount {NAMESPACE}/{account} came back without a token")]
    NoToken { account: &'static str },
    #[error("token file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a client acting as ServiceAccount {NAMESPACE}/{account}: {source}")]
    Client {
        account: &'static str,
        source: kube::Error,
    },
}

/// The private directory of the token files; removed with the last holder.
struct TokenDir(PathBuf);

const DIR_PREFIX: &str = "flotilla-controller-manager-";

/// The process that made a token directory of this name, if it is one.
fn dir_owner(name: &str) -> Option<u32> {
    name.strip_prefix(DIR_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// Removes the token directories of controller-managers no longer running (killed before
/// they could), as far as `/proc` tells.
fn remove_stale(base: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(dir_owner) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            // Only this user's own directories can go; others' stay, unreadable anyway.
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl TokenDir {
    fn create() -> Result<Self, Error> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        remove_stale(&base);
        let stamp = jiff::Timestamp::now().as_nanosecond();
        let mut last = None;
        for attempt in 0..16u32 {
            let path = base.join(format!(
                "{DIR_PREFIX}{}-{stamp:x}-{attempt}",
                std::process::id()
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Self(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some((path, e)),
                Err(source) => return Err(Error::File { path, source }),
            }
        }
        let (path, source) = last.unwrap_or_else(|| {
            (
                base,
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            )
        });
        Err(Error::File { path, source })
    }

    /// Replaces `account`'s token file at once (a reader sees the old token or the new).
    fn write(&self, account: &str, token: &str) -> Result<PathBuf, Error> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.0.join(account);
        let tmp = self.0.join(format!(".{account}.tmp"));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::File { path, source }
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(token.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(path)
    }
}

impl Drop for TokenDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::debug!(dir = %self.0.display(), error = %e, "removing the token directory failed");
        }
    }
}

/// Makes the controllers' identities: their accounts, tokens, and clients.
pub struct Credentials {
    /// The controller-manager's configuration: the controllers' clients keep its server,
    /// CA and timeouts.
    base: kube::Config,
    issuer: Issuer,
}

/// A token as issued.
#[derive(Debug, Clone)]
struct Issued {
    /// The account's uid the token names.
    uid: String,
    /// When to ask for the next one.
    refresh_at: jiff::Timestamp,
}

impl Credentials {
    pub fn new(root: kube::Client, base: kube::Config) -> Result<Self, Error> {
        Ok(Self {
            base,
            issuer: Issuer {
                root,
                dir: Arc::new(TokenDir::create()?),
            },
        })
    }

    /// A client acting as `kube-system/<account>`, and the future that keeps its token
    /// fresh (run it as long as the client is used). Retries until the first token.
    pub async fn client(
        &self,
        account: &'static str,
    ) -> Result<(kube::Client, BoxFuture<'static, ()>), Error> {
        let mut backoff = retry_backoff();
        let (issued, path) = loop {
            match self.issuer.issue(account).await {
                Ok(ok) => break ok,
                Err(e) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(account, error = %e, retry_in = ?wait, "no credentials for the controller yet");
                    tokio::time::sleep(wait).await;
                }
            }
        };
        let cfg = component_base::client::with_token_file(&self.base, &path);
        let client =
            kube::Client::try_from(cfg).map_err(|source| Error::Client { account, source })?;
        Ok((
            client,
            Box::pin(self.issuer.clone().keep_fresh(account, issued)),
        ))
    }
}

fn retry_backoff() -> Backoff {
    Backoff::new(Duration::from_secs(1), Duration::from_secs(30)).with_jitter(0.2)
}

/// Issues tokens with the controller-manager's own client into the token directory.
#[derive(Clone)]
struct Issuer {
    root: kube::Client,
    dir: Arc<TokenDir>,
}

impl Issuer {
    fn accounts(&self) -> Api<ServiceAccount> {
        Api::namespaced(self.root.clone(), NAMESPACE)
    }

    /// The account's uid, if it exists.
    async fn uid(&self, account: &'static str) -> Result<Option<String>, Error> {
        let found = self
            .accounts()
            .get_opt(account)
            .await
            .map_err(|source| Error::Read { account, source })?;
        Ok(found.map(|sa| sa.metadata.uid.unwrap_or_default()))
    }

    /// Creates the account unless it exists; returns its uid.
    async fn ensure(&self, account: &'static str) -> Result<String, Error> {
        if let Some(uid) = self.uid(account).await? {
            return Ok(uid);
        }
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(account.to_string()),
                namespace: Some(NAMESPACE.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        match self.accounts().create(&PostParams::default(), &sa).await {
            Ok(sa) => {
                tracing::info!(
                    account,
                    namespace = NAMESPACE,
                    "created the controller's ServiceAccount"
                );
                Ok(sa.metadata.uid.unwrap_or_default())
            }
            // Another replica (or an administrator) made it meanwhile.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                Ok(self.uid(account).await?.unwrap_or_default())
            }
            Err(source) => Err(Error::Create { account, source }),
        }
    }

    /// Makes sure the account exists, asks for a token and writes it to its file.
    #[tracing::instrument(skip(self), fields(namespace = NAMESPACE))]
    async fn issue(&self, account: &'static str) -> Result<(Issued, PathBuf), Error> {
        let uid = self.ensure(account).await?;
        let req = TokenRequest {
            metadata: ObjectMeta::default(),
            spec: TokenRequestSpec {
                expiration_seconds: Some(EXPIRATION_SECONDS),
                ..Default::default()
            },
            status: None,
        };
        let asked = jiff::Timestamp::now();
        let tr = self
            .accounts()
            .create_token_request(account, &PostParams::default(), &req)
            .await
            .map_err(|source| Error::Token { account, source })?;
        let status = tr
            .status
            .filter(|s| !s.token.is_empty())
            .ok_or(Error::NoToken { account })?;
        let path = self.dir.write(account, &status.token)?;
        let refresh_at = refresh_at(asked, status.expiration_timestamp.0);
        tracing::debug!(%refresh_at, "token issued");
        Ok((Issued { uid, refresh_at }, path))
    }

    /// Keeps `account`'s token file current (see the module's contract); never returns.
    async fn keep_fresh(self, account: &'static str, mut issued: Issued) {
        let mut backoff = retry_backoff();
        loop {
            let now = jiff::Timestamp::now();
            tokio::time::sleep(until(now, issued.refresh_at).min(CHECK_PERIOD)).await;
            let now = jiff::Timestamp::now();
            let due = now >= issued.refresh_at
                || match self.uid(account).await {
                    Ok(found) => found.as_deref() != Some(issued.uid.as_str()),
                    // The apiserver will answer again; the token is still good meanwhile.
                    Err(e) => {
                        tracing::debug!(account, error = %e, "checking the controller's ServiceAccount failed");
                        false
                    }
                };
            if !due {
                continue;
            }
            loop {
                match self.issue(account).await {
                    Ok((next, _)) => {
                        backoff.reset();
                        issued = next;
                        break;
                    }
                    Err(e) => {
                        let wait = backoff.next_delay();
                        tracing::warn!(account, error = %e, retry_in = ?wait, "refreshing the controller's token failed");
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
    }
}

/// When to refresh a token asked for at `asked` that expires at `expires`: after 80% of
/// its lifetime, and not sooner than [`MIN_REFRESH`].
fn refresh_at(asked: jiff::Timestamp, expires: jiff::Timestamp) -> jiff::Timestamp {
    let lifetime = expires.duration_since(asked).as_secs().max(0);
    let wait = (lifetime / 5)
        .checked_mul(4)
        .map_or(MIN_REFRESH, |s| Duration::from_secs(s.unsigned_abs()))
        .max(MIN_REFRESH);
    let wait = jiff::SignedDuration::try_from(wait).unwrap_or(jiff::SignedDuration::MAX);
    asked.checked_add(wait).unwrap_or(jiff::Timestamp::MAX)
}

/// How long from `now` until `at` (zero if past).
fn until(now: jiff::Timestamp, at: jiff::Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn a_token_is_refreshed_at_four_fifths_of_its_life() {
        assert_eq!(refresh_at(at(1000), at(4600)), at(1000 + 2880));
        // A short-lived token still waits a little; one already expired too.
        assert_eq!(refresh_at(at(1000), at(1005)), at(1010));
        assert_eq!(refresh_at(at(1000), at(10)), at(1010));
        // The end of time does not overflow.
        assert_eq!(
            refresh_at(jiff::Timestamp::MAX, jiff::Timestamp::MAX),
            jiff::Timestamp::MAX
        );
        let far = refresh_at(jiff::Timestamp::MIN, jiff::Timestamp::MAX);
        assert!(far > jiff::Timestamp::MIN);
    }

    #[test]
    fn waits_are_never_negative() {
        assert_eq!(until(at(10), at(5)), Duration::ZERO);
        assert_eq!(until(at(5), at(10)), Duration::from_secs(5));
    }

    #[test]
    fn a_token_directory_names_its_process() {
        assert_eq!(
            dir_owner("flotilla-controller-manager-1185-18ee391087155bf1-0"),
            Some(1185)
        );
        assert_eq!(dir_owner("flotilla-controller-manager-x-1-0"), None);
        assert_eq!(dir_owner("something-else-1185"), None);
        let dir = TokenDir::create().unwrap();
        let name = dir.0.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(dir_owner(&name), Some(std::process::id()));
    }

    #[test]
    fn token_files_are_private_and_replaced_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TokenDir::create().unwrap();
        let root = dir.0.clone();
        assert_eq!(
            std::fs::metadata(&root).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let p = dir.write("deployment-controller", "one").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "one");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(dir.write("deployment-controller", "two").unwrap(), p);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        drop(dir);
        assert!(!root.exists(), "the directory goes with its holder");
    }
}
