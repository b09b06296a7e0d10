//! Container images from registries: pulling a container's image as its pull policy says,
//! and splitting a reference into repository and tag for the pull.

use hyper::Method;

use super::client::enc;
use super::{image, other, DockerRuntime};
use crate::runtime::{PullPolicy, Result, RuntimeError};

impl DockerRuntime {
    pub(super) async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<()> {
        let present = image::present(&self.docker, image)
            .await
            .map_err(other)?
            .is_some();
        let pull = match policy {
            PullPolicy::Always => true,
            PullPolicy::IfNotPresent => !present,
            PullPolicy::Never if !present => {
                return Err(RuntimeError::ImageNeverPull {
                    image: image.into(),
                })
            }
            PullPolicy::Never => false,
        };
        if !pull {
            return Ok(());
        }
        let (repo, tag) = split_image(image);
        self.docker
            .progress(
                Method::POST,
                &format!("/images/create?fromImage={}&tag={}", enc(repo), enc(tag)),
                None,
                "application/json",
            )
            .await
            .map(|_| ())
            .map_err(|e| RuntimeError::ImagePull {
                image: image.into(),
                message: e.to_string(),
            })
    }
}

/// `repo[:tag]` (a digest or a registry port is not a tag).
pub fn split_image(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    match image.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (image, "latest"),
    }
}
