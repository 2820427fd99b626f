//! Images: looked up, loaded from and saved to `docker save` archives, tagged, built from a
//! context folder, and the outputs holder's image. No image is ever pulled.

use std::path::{Path, PathBuf};

use bollard::query_parameters::{BuildImageOptionsBuilder, ImportImageOptionsBuilder};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tracing::{debug, info};

use super::Executor;
use crate::error::{engine_error_is_transient, message_of, status_of, ExecError, Subject};
use crate::holder::{self, Arch};

impl Executor {
    /// Whether the engine has `image` (a reference or id).
    pub async fn has_image(&self, image: &str) -> Result<bool, ExecError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(self
                .engine_err(Subject::Image(image.into()), "inspecting the image")(
                e
            )),
        }
    }

    /// Loads images from a `docker save` archive (`docker load`) and returns the id of the first
    /// one. A malformed archive is [`ExecError::BadImage`].
    pub async fn load_image<R>(&self, tar: R) -> Result<String, ExecError>
    where
        R: AsyncRead + Send + 'static,
    {
        let subject = || Subject::Image("archive".into());
        let body = tokio_util::io::ReaderStream::new(tar);
        let opts = ImportImageOptionsBuilder::default().quiet(true).build();
        let mut stream = self.docker.import_image_stream(opts, body, None);
        let mut loaded: Vec<String> = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(msg) => {
                    if let Some(line) = msg.stream.as_deref() {
                        debug!(line = line.trim(), "docker load");
                        if let Some(id) = line.trim().strip_prefix("Loaded image ID: ") {
                            loaded.push(id.to_string());
                        } else if let Some(name) = line.trim().strip_prefix("Loaded image: ") {
                            loaded.push(name.to_string());
                        }
                    }
                }
                Err(e) if engine_error_is_transient(&e) && status_of(&e).is_none() => {
                    return Err(self.engine_err(subject(), "loading an image")(e));
                }
                Err(e) => {
                    return Err(ExecError::BadImage {
                        subject: subject(),
                        message: message_of(&e),
                    })
                }
            }
        }
        let Some(first) = loaded.first() else {
            return Err(ExecError::BadImage {
                subject: subject(),
                message: "the archive held no image".into(),
            });
        };
        let id = self.image_id(first).await?;
        info!(image = %id, names = ?loaded, "loaded image");
        Ok(id)
    }

    /// Writes `image` (a reference or id) as a `docker save` archive to `dest`, through a
    /// temporary file renamed into place (no half-written archive is left). Returns its size.
    pub async fn save_image(&self, image: &str, dest: &Path) -> Result<u64, ExecError> {
        let subject = || Subject::Image(image.to_string());
        if !self.has_image(image).await? {
            return Err(ExecError::BadImage {
                subject: subject(),
                message: "not present in the engine: build or load it first".into(),
            });
        }
        let tmp = dest.with_extension("partial");
        let io_err = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| ExecError::Io {
                subject: subject(),
                what,
                path,
                source,
            }
        };
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(io_err("creating", &tmp))?;
        let mut stream = self.docker.export_image(image);
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    drop(file);
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(self.engine_err(subject(), "saving the image")(e));
                }
            };
            size += chunk.len() as u64;
            if let Err(e) = file.write_all(&chunk).await {
                drop(file);
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(io_err("writing", &tmp)(e));
            }
        }
        file.sync_all().await.map_err(io_err("syncing", &tmp))?;
        drop(file);
        tokio::fs::rename(&tmp, dest)
            .await
            .map_err(io_err("renaming into", dest))?;
        info!(%image, bytes = size, dest = %dest.display(), "saved image archive");
        Ok(size)
    }

    /// The engine's id of `image` (`sha256:...`).
    pub async fn image_id_of(&self, image: &str) -> Result<String, ExecError> {
        self.image_id(image).await
    }

    /// Tags `image` (a reference or id) as `repo:tag`.
    pub async fn tag_image(&self, image: &str, reference: &str) -> Result<(), ExecError> {
        let (repo, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
        let opts = bollard::query_parameters::TagImageOptionsBuilder::default()
            .repo(repo)
            .tag(tag)
            .build();
        self.docker
            .tag_image(image, Some(opts))
            .await
            .map_err(self.engine_err(Subject::Image(image.to_string()), "tagging the image"))
    }

    async fn image_id(&self, reference: &str) -> Result<String, ExecError> {
        let img =
            self.docker.inspect_image(reference).await.map_err(
                self.engine_err(Subject::Image(reference.into()), "inspecting the image"),
            )?;
        Ok(img.id.unwrap_or_else(|| reference.to_string()))
    }

    /// Builds the `Dockerfile` in `context_dir` (with that folder as the build context) and
    /// tags the image `tag`; returns the image id. Nothing can be pulled: base images must be
    /// `scratch` or already present. A failing build is [`ExecError::BadImage`].
    pub async fn build_image(&self, context_dir: &Path, tag: &str) -> Result<String, ExecError> {
        let subject = || Subject::Image(tag.to_string());
        let dir = context_dir.to_path_buf();
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| ExecError::Io {
                subject: Subject::Image(tag.to_string()),
                what,
                path,
                source,
            }
        };
        if !dir.join("Dockerfile").is_file() {
            return Err(ExecError::BadImage {
                subject: subject(),
                message: format!("no Dockerfile in {}", dir.display()),
            });
        }
        // Tar the context into a temporary file (contexts may hold large model files).
        let tar_file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let mut f = tempfile::tempfile()?;
            {
                let mut b = tar::Builder::new(&mut f);
                b.follow_symlinks(false);
                b.append_dir_all(".", &dir)?;
                b.finish()?;
            }
            std::io::Seek::rewind(&mut f)?;
            Ok(f)
        })
        .await
        .map_err(|e| io("taring the build context", context_dir)(std::io::Error::other(e)))?
        .map_err(io("taring the build context", context_dir))?;
        let body = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(tar_file));
        self.build_from(body, tag).await
    }

    async fn build_from<S>(&self, context_tar: S, tag: &str) -> Result<String, ExecError>
    where
        S: Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    {
        let subject = || Subject::Image(tag.to_string());
        let opts = BuildImageOptionsBuilder::default()
            .t(tag)
            .rm(true)
            .forcerm(true)
            .build();
        let mut stream =
            self.docker
                .build_image(opts, None, Some(bollard::body_try_stream(context_tar)));
        let mut id = None;
        let mut last = String::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(msg) => {
                    if let Some(line) = msg
                        .stream
                        .as_deref()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                    {
                        debug!(tag, line, "docker build");
                        last = line.to_string();
                    }
                    if let Some(aux) = msg.aux.and_then(|a| a.id) {
                        id = Some(aux);
                    }
                }
                Err(e) if engine_error_is_transient(&e) && status_of(&e).is_none() => {
                    return Err(self.engine_err(subject(), "building an image")(e));
                }
                Err(e) => {
                    return Err(ExecError::BadImage {
                        subject: subject(),
                        message: format!("build failed: {} (last step: {last})", message_of(&e)),
                    })
                }
            }
        }
        let id = match id {
            Some(id) => id,
            None => self.image_id(tag).await?,
        };
        info!(tag, image = %id, "built image");
        Ok(id)
    }

    /// The holder image's tag, built once per executor if the engine lacks it.
    pub(super) async fn holder_image(&self) -> Result<String, ExecError> {
        self.holder_image
            .get_or_try_init(|| async {
                let info = self
                    .docker
                    .info()
                    .await
                    .map_err(self.engine_err(Subject::Engine, "reading engine info"))?;
                let engine_arch = info.architecture.unwrap_or_default();
                let arch = Arch::from_engine(&engine_arch).ok_or_else(|| ExecError::BadImage {
                    subject: Subject::Image("outputs holder".into()),
                    message: format!(
                        "no holder program for the engine's architecture {engine_arch:?}"
                    ),
                })?;
                let tag = holder::image_tag(arch);
                if !self.has_image(&tag).await? {
                    let ctx = holder::build_context(arch).map_err(|source| ExecError::Io {
                        subject: Subject::Image(tag.clone()),
                        what: "writing the holder build context",
                        path: PathBuf::from("(memory)"),
                        source,
                    })?;
                    let body =
                        futures_util::stream::once(async move { Ok(bytes::Bytes::from(ctx)) });
                    self.build_from(body, &tag).await?;
                }
                Ok(tag)
            })
            .await
            .cloned()
    }
}
