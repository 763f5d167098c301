//! An open snapshot file as openraft streams it (Raft's `SnapshotData`): read in chunks to
//! send it to a follower, written chunk by chunk as one arrives.
//!
//! In a running node each read, write and seek runs on tokio's blocking pool
//! ([`tokio::fs::File`]), off the async workers. Under the simulator
//! ([`crate::blocking::run_inline`]) they run in place on the one thread, so that the moment a
//! chunk is ready does not depend on another thread's timing.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

#[derive(Debug)]
pub enum SnapshotHandle {
    /// On tokio's blocking pool.
    Pooled(tokio::fs::File),
    /// In place; `seek` holds the result of a seek started and not yet completed.
    InPlace {
        file: std::fs::File,
        seek: Option<io::Result<u64>>,
    },
}

impl SnapshotHandle {
    /// Wraps an open file, pooled or in place as [`crate::blocking::inline`] says.
    pub fn from_std(file: std::fs::File) -> Self {
        if crate::blocking::inline() {
            Self::InPlace { file, seek: None }
        } else {
            Self::Pooled(tokio::fs::File::from_std(file))
        }
    }

    /// Opens `path` for reading.
    pub fn open(path: &std::path::Path) -> io::Result<Self> {
        std::fs::File::open(path).map(Self::from_std)
    }

    /// Makes what was written durable.
    pub async fn sync_all(&self) -> io::Result<()> {
        match self {
            Self::Pooled(file) => file.sync_all().await,
            Self::InPlace { file, .. } => file.sync_all(),
        }
    }

    /// The file's length in bytes.
    pub async fn len(&self) -> io::Result<u64> {
        match self {
            Self::Pooled(file) => file.metadata().await.map(|m| m.len()),
            Self::InPlace { file, .. } => file.metadata().map(|m| m.len()),
        }
    }
}

impl AsyncRead for SnapshotHandle {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Pooled(file) => Pin::new(file).poll_read(cx, buf),
            Self::InPlace { file, .. } => {
                let read = file.read(buf.initialize_unfilled())?;
                buf.advance(read);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for SnapshotHandle {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Pooled(file) => Pin::new(file).poll_write(cx, data),
            Self::InPlace { file, .. } => Poll::Ready(file.write(data)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Pooled(file) => Pin::new(file).poll_flush(cx),
            Self::InPlace { file, .. } => Poll::Ready(file.flush()),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Pooled(file) => Pin::new(file).poll_shutdown(cx),
            Self::InPlace { file, .. } => Poll::Ready(file.flush()),
        }
    }
}

impl AsyncSeek for SnapshotHandle {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        match self.get_mut() {
            Self::Pooled(file) => Pin::new(file).start_seek(position),
            Self::InPlace { file, seek } => {
                *seek = Some(file.seek(position));
                Ok(())
            }
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.get_mut() {
            Self::Pooled(file) => Pin::new(file).poll_complete(cx),
            Self::InPlace { file, seek } => Poll::Ready(match seek.take() {
                Some(result) => result,
                None => file.stream_position(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    async fn round_trip(mut handle: SnapshotHandle) -> Vec<u8> {
        handle.write_all(b"hello, snapshot").await.unwrap();
        handle.flush().await.unwrap();
        handle.sync_all().await.unwrap();
        assert_eq!(handle.len().await.unwrap(), 15);
        assert_eq!(handle.seek(SeekFrom::Start(7)).await.unwrap(), 7);
        let mut read = Vec::new();
        handle.read_to_end(&mut read).await.unwrap();
        read
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_handle_reads_writes_and_seeks_on_the_pool_and_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let open = |name: &str| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(dir.path().join(name))
                .unwrap()
        };
        let pooled = SnapshotHandle::Pooled(tokio::fs::File::from_std(open("a")));
        assert_eq!(round_trip(pooled).await, b"snapshot");
        let in_place = SnapshotHandle::InPlace {
            file: open("b"),
            seek: None,
        };
        assert_eq!(round_trip(in_place).await, b"snapshot");
    }
}
