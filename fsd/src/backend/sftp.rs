//! One SFTP v3 session on one SSH channel: fsd's own framing over russh's channel, with
//! russh-sftp's packet types and codecs.
//!
//! russh-sftp's `RawSftpSession` hands every request to a writer task through a queue and the
//! channel's `AsyncWrite`, which copies it once more; a write's data is also copied into an
//! owned vector and serialised again. Here a request goes straight to the channel from the
//! future that asks: the first poll sends it, so requests go out in the order they are asked,
//! as fsd's write-behind and the FUSE dispatch thread need; when the channel cannot take it at
//! once, a task finishes sending it, so that a request given up never leaves half a packet on
//! the channel. A write's data travels as `Bytes` slices of the caller's buffer: the only copy
//! left in user space is russh's, into the SSH packet it encrypts. One task per session reads
//! the answers, reassembles the SFTP packets from the channel's data and hands each to the
//! request with its id.
//!
//! **Deadline.** Every request, sent and answered, is bounded by the session's deadline: the
//! one timer of a request to the file server. OpenSSH's `sftp-server` answers one request after
//! the other, so a request unanswered past the deadline means the session is stuck (its server
//! process stopped, or wedged on a dead disk), not merely busy with another: the session gives
//! up, and every request it still holds fails with [`Error::Timeout`] at once, as later ones
//! do. [`SftpChannel::is_quiet`] and [`SftpChannel::probe`] let the owner ask a session that
//! holds no request whether it still answers.
//!
//! Handles are still decoded by russh-sftp, as UTF-8 strings (see the handle defect in
//! [`super::ssh`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use russh::client::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use russh_sftp::client::error::Error;
use russh_sftp::extensions::{LimitsExtension, Statvfs, StatvfsExtension};
use russh_sftp::protocol::{
    Attrs, Close, Data, Extended, FSetStat, FileAttributes, Fstat, Handle, Init, Lstat, MkDir,
    Name, Open, OpenDir, OpenFlags, Packet, Read, ReadDir, ReadLink, RealPath, Remove, Rename,
    RmDir, SetStat, Status, StatusCode, Symlink, Version,
};
use tokio_util::sync::CancellationToken;

/// `SSH_FXP_WRITE`, framed here rather than by russh-sftp.
const SSH_FXP_WRITE: u8 = 6;
/// Writes up to this size are sent as one piece (header and data copied together); larger
/// ones as the header and then the caller's data, uncopied.
const COPY_WRITES_UP_TO: usize = 16 * 1024;

type Answer = Result<Packet, Error>;

/// Requests waiting for their answer, by id (`None`: the `INIT`, answered by `VERSION`).
struct Waiting {
    answers: Mutex<Option<HashMap<Option<u32>, tokio::sync::oneshot::Sender<Packet>>>>,
    /// Cancelled once the session has ended: requests still sending give up.
    ended: CancellationToken,
    /// Set when the session ended because a request outlived its deadline.
    stuck: AtomicBool,
    /// When the server last answered (or the session started).
    heard: Mutex<Instant>,
}

impl Waiting {
    fn new() -> Self {
        Self {
            answers: Mutex::new(Some(HashMap::new())),
            ended: CancellationToken::new(),
            stuck: AtomicBool::new(false),
            heard: Mutex::new(Instant::now()),
        }
    }

    /// Whether the session is open, holds no request and has heard nothing for `quiet` by `now`.
    fn is_quiet(&self, quiet: Duration, now: Instant) -> bool {
        let idle = self
            .answers
            .lock()
            .expect("waiting lock")
            .as_ref()
            .is_some_and(HashMap::is_empty);
        idle && now.saturating_duration_since(*self.heard.lock().expect("heard lock")) >= quiet
    }

    /// Registers `id`; `None` once the session has ended.
    fn add(&self, id: Option<u32>) -> Option<tokio::sync::oneshot::Receiver<Packet>> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let mut answers = self.answers.lock().expect("waiting lock");
        answers.as_mut()?.insert(id, answer);
        Some(answered)
    }

    fn forget(&self, id: Option<u32>) {
        if let Some(answers) = self.answers.lock().expect("waiting lock").as_mut() {
            answers.remove(&id);
        }
    }

    fn answer(&self, packet: Packet) {
        *self.heard.lock().expect("heard lock") = Instant::now();
        let id = match &packet {
            Packet::Version(_) => None,
            Packet::Status(p) => Some(p.id),
            Packet::Handle(p) => Some(p.id),
            Packet::Data(p) => Some(p.id),
            Packet::Name(p) => Some(p.id),
            Packet::Attrs(p) => Some(p.id),
            Packet::ExtendedReply(p) => Some(p.id),
            request => {
                log::debug!("ignoring a request from the SFTP server: {request:?}");
                return;
            }
        };
        let waiting = self
            .answers
            .lock()
            .expect("waiting lock")
            .as_mut()
            .and_then(|a| a.remove(&id));
        // No one waits for an answer whose request was given up (a read ahead dropped, a
        // timeout): it is dropped.
        if let Some(waiting) = waiting {
            let _ = waiting.send(packet);
        }
    }

    /// The session ended: every waiting request fails, and later ones at once.
    fn end(&self) {
        self.answers.lock().expect("waiting lock").take();
        self.ended.cancel();
    }

    /// A request outlived its deadline: the session ends, and its requests time out.
    fn give_up(&self) {
        self.stuck.store(true, Ordering::Relaxed);
        self.end();
    }

    /// What a request of the ended session fails with.
    fn ended_error(&self) -> Error {
        if self.stuck.load(Ordering::Relaxed) {
            Error::Timeout
        } else {
            closed()
        }
    }
}

/// Takes a request out of [`Waiting`] however its future ends: answered (a no-op then),
/// failed, timed out or dropped (a read ahead given up).
struct Asked<'a> {
    waiting: &'a Waiting,
    id: Option<u32>,
}

impl Drop for Asked<'_> {
    fn drop(&mut self) {
        self.waiting.forget(self.id);
    }
}

/// Ends the session when dropped holding it: see [`SftpChannel::send_whole`].
struct Unfinished<'a>(Option<&'a Waiting>);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if let Some(waiting) = self.0 {
            waiting.end();
        }
    }
}

/// One SFTP session. Cheap to share (`Arc`); requests may be made from any thread inside the
/// runtime.
pub struct SftpChannel {
    channel: ChannelWriteHalf<Msg>,
    /// Held while one request's bytes go to the channel, so that packets never interleave.
    sending: tokio::sync::Mutex<()>,
    waiting: Arc<Waiting>,
    next_id: AtomicU32,
    deadline: Duration,
}

fn closed() -> Error {
    Error::UnexpectedBehavior("the SFTP session closed".into())
}

fn unexpected(packet: &Packet) -> Error {
    log::debug!("unexpected SFTP answer {packet:?}");
    Error::UnexpectedPacket
}

/// The answer as `$variant`, or its error status.
macro_rules! answer_as {
    ($answer:expr, $variant:ident) => {
        match $answer? {
            Packet::$variant(p) => Ok(p),
            Packet::Status(status) => Err(Error::Status(status)),
            other => Err(unexpected(&other)),
        }
    };
}

/// The answer as a status: `Ok` only for `SSH_FX_OK`.
fn status(answer: Answer) -> Result<Status, Error> {
    match answer? {
        Packet::Status(status) if status.status_code == StatusCode::Ok => Ok(status),
        Packet::Status(status) => Err(Error::Status(status)),
        other => Err(unexpected(&other)),
    }
}

impl SftpChannel {
    /// Starts SFTP on `channel` (the `sftp` subsystem already requested): the answer reader,
    /// then `INIT`. Each request fails with [`Error::Timeout`] after `deadline`, and so does the
    /// session (see the module documentation).
    pub async fn start(
        channel: Channel<Msg>,
        deadline: Duration,
    ) -> Result<(Arc<Self>, Version), Error> {
        let (read, write) = channel.split();
        let waiting = Arc::new(Waiting::new());
        tokio::spawn(read_answers(read, waiting.clone()));
        let session = Arc::new(Self {
            channel: write,
            sending: tokio::sync::Mutex::new(()),
            waiting,
            next_id: AtomicU32::new(1),
            deadline,
        });
        let version = match session
            .ask(None, vec![Bytes::try_from(Packet::from(Init::default()))?])
            .await?
        {
            Packet::Version(version) => version,
            other => return Err(unexpected(&other)),
        };
        Ok((session, version))
    }

    fn id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends the packet `make(id)` for a new request id and waits for its answer.
    async fn call(self: &Arc<Self>, make: impl FnOnce(u32) -> Packet) -> Answer {
        let id = self.id();
        self.ask(Some(id), vec![Bytes::try_from(make(id))?]).await
    }

    /// Sends `pieces`, one SFTP packet, and waits for the answer to `id`: at most the session's
    /// deadline for both (past it, the session gives up), and no longer than the session lives
    /// (a send waiting for the channel's window of a dead connection would wait for ever).
    async fn ask(self: &Arc<Self>, id: Option<u32>, pieces: Vec<Bytes>) -> Answer {
        let answered = self
            .waiting
            .add(id)
            .ok_or_else(|| self.waiting.ended_error())?;
        let _asked = Asked {
            waiting: &self.waiting,
            id,
        };
        let exchange = async {
            self.send(pieces).await?;
            answered.await.map_err(|_| self.waiting.ended_error())
        };
        tokio::select! {
            biased;
            answer = tokio::time::timeout(self.deadline, exchange) => {
                answer.unwrap_or_else(|_| {
                    self.waiting.give_up();
                    Err(Error::Timeout)
                })
            }
            () = self.waiting.ended.cancelled() => Err(self.waiting.ended_error()),
        }
    }

    /// Whether the session holds no request and has heard nothing from the server for `quiet`.
    pub fn is_quiet(&self, quiet: Duration) -> bool {
        self.waiting.is_quiet(quiet, Instant::now())
    }

    /// Asks the server something that costs it nothing (`REALPATH` of `.`): answered, the
    /// session is alive; past the deadline, it has given up like any request.
    pub async fn probe(self: &Arc<Self>) -> Result<(), Error> {
        self.realpath(".").await.map(drop)
    }

    /// Ends the session (its connection is dropped): every request it holds fails at once.
    pub fn end(&self) {
        self.waiting.end();
    }

    /// Ends the session as stuck: every request it holds fails at once with [`Error::Timeout`].
    pub fn give_up(&self) {
        self.waiting.give_up();
    }

    /// Puts `pieces`, one SFTP packet, on the channel: at once where the channel takes them
    /// (the first poll), else in a task of its own, so that a caller giving up (a read ahead
    /// dropped) never leaves a packet half sent, which the server would misread with every
    /// later one.
    async fn send(self: &Arc<Self>, pieces: Vec<Bytes>) -> Result<(), Error> {
        let mut sending = Box::pin(self.clone().send_whole(pieces));
        if let Poll::Ready(sent) = futures_util::poll!(&mut sending) {
            return sent;
        }
        tokio::spawn(sending)
            .await
            .unwrap_or_else(|_| Err(closed()))
    }

    /// Sends `pieces` whole, one after the other, unless the session ends first. Dropped
    /// half way, it ends the session.
    async fn send_whole(self: Arc<Self>, pieces: Vec<Bytes>) -> Result<(), Error> {
        let sent = async {
            let _sending = self.sending.lock().await;
            let mut unfinished = Unfinished(Some(&self.waiting));
            for piece in pieces {
                self.channel
                    .data_bytes(piece)
                    .await
                    .map_err(|e| Error::IO(e.to_string()))?;
            }
            unfinished.0 = None;
            Ok(())
        };
        tokio::select! {
            biased;
            sent = sent => sent,
            () = self.waiting.ended.cancelled() => Err(self.waiting.ended_error()),
        }
    }

    pub async fn open(
        self: &Arc<Self>,
        path: &str,
        flags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, Error> {
        let filename = path.to_owned();
        let answer = self.call(|id| {
            (Open {
                id,
                filename,
                pflags: flags,
                attrs,
            })
            .into()
        });
        answer_as!(answer.await, Handle)
    }

    pub async fn close(self: &Arc<Self>, handle: &str) -> Result<Status, Error> {
        let handle = handle.to_owned();
        status(self.call(|id| (Close { id, handle }).into()).await)
    }

    pub async fn read(
        self: &Arc<Self>,
        handle: &str,
        offset: u64,
        len: u32,
    ) -> Result<Data, Error> {
        let handle = handle.to_owned();
        let answer = self.call(|id| {
            (Read {
                id,
                handle,
                offset,
                len,
            })
            .into()
        });
        answer_as!(answer.await, Data)
    }

    pub async fn write(
        self: &Arc<Self>,
        handle: &str,
        offset: u64,
        data: Bytes,
    ) -> Result<Status, Error> {
        let id = self.id();
        let mut packet = write_header(id, handle, offset, data.len())?;
        let answer = if data.len() <= COPY_WRITES_UP_TO {
            packet.put_slice(&data);
            self.ask(Some(id), vec![packet.freeze()]).await
        } else {
            self.ask(Some(id), vec![packet.freeze(), data]).await
        };
        status(answer)
    }

    pub async fn lstat(self: &Arc<Self>, path: &str) -> Result<Attrs, Error> {
        let path = path.to_owned();
        answer_as!(self.call(|id| (Lstat { id, path }).into()).await, Attrs)
    }

    pub async fn fstat(self: &Arc<Self>, handle: &str) -> Result<Attrs, Error> {
        let handle = handle.to_owned();
        answer_as!(self.call(|id| (Fstat { id, handle }).into()).await, Attrs)
    }

    pub async fn setstat(
        self: &Arc<Self>,
        path: &str,
        attrs: FileAttributes,
    ) -> Result<Status, Error> {
        let path = path.to_owned();
        status(self.call(|id| (SetStat { id, path, attrs }).into()).await)
    }

    pub async fn fsetstat(
        self: &Arc<Self>,
        handle: &str,
        attrs: FileAttributes,
    ) -> Result<Status, Error> {
        let handle = handle.to_owned();
        status(
            self.call(|id| (FSetStat { id, handle, attrs }).into())
                .await,
        )
    }

    pub async fn opendir(self: &Arc<Self>, path: &str) -> Result<Handle, Error> {
        let path = path.to_owned();
        answer_as!(self.call(|id| (OpenDir { id, path }).into()).await, Handle)
    }

    pub async fn readdir(self: &Arc<Self>, handle: &str) -> Result<Name, Error> {
        let handle = handle.to_owned();
        answer_as!(self.call(|id| (ReadDir { id, handle }).into()).await, Name)
    }

    pub async fn remove(self: &Arc<Self>, path: &str) -> Result<Status, Error> {
        let filename = path.to_owned();
        status(self.call(|id| (Remove { id, filename }).into()).await)
    }

    pub async fn mkdir(
        self: &Arc<Self>,
        path: &str,
        attrs: FileAttributes,
    ) -> Result<Status, Error> {
        let path = path.to_owned();
        status(self.call(|id| (MkDir { id, path, attrs }).into()).await)
    }

    pub async fn rmdir(self: &Arc<Self>, path: &str) -> Result<Status, Error> {
        let path = path.to_owned();
        status(self.call(|id| (RmDir { id, path }).into()).await)
    }

    /// Plain `SSH_FXP_RENAME`: refuses an existing `to`.
    pub async fn rename(self: &Arc<Self>, from: &str, to: &str) -> Result<Status, Error> {
        let (oldpath, newpath) = (from.to_owned(), to.to_owned());
        status(
            self.call(|id| {
                (Rename {
                    id,
                    oldpath,
                    newpath,
                })
                .into()
            })
            .await,
        )
    }

    pub async fn realpath(self: &Arc<Self>, path: &str) -> Result<Name, Error> {
        let path = path.to_owned();
        answer_as!(self.call(|id| (RealPath { id, path }).into()).await, Name)
    }

    pub async fn readlink(self: &Arc<Self>, path: &str) -> Result<Name, Error> {
        let path = path.to_owned();
        answer_as!(self.call(|id| (ReadLink { id, path }).into()).await, Name)
    }

    /// `SSH_FXP_SYMLINK` as OpenSSH takes it: target first, then the link's path.
    pub async fn symlink(self: &Arc<Self>, target: &str, path: &str) -> Result<Status, Error> {
        let (linkpath, targetpath) = (target.to_owned(), path.to_owned());
        status(
            self.call(|id| {
                (Symlink {
                    id,
                    linkpath,
                    targetpath,
                })
                .into()
            })
            .await,
        )
    }

    /// An `SSH_FXP_EXTENDED` request; the answer as it came.
    pub async fn extended(self: &Arc<Self>, request: &str, data: Vec<u8>) -> Answer {
        let request = request.to_owned();
        self.call(|id| (Extended { id, request, data }).into())
            .await
    }

    pub async fn statvfs(self: &Arc<Self>, path: &str) -> Result<Statvfs, Error> {
        let data = StatvfsExtension {
            path: path.to_owned(),
        };
        let reply = answer_as!(
            self.extended(russh_sftp::extensions::STATVFS, data.try_into()?)
                .await,
            ExtendedReply
        )?;
        Ok(russh_sftp::de::from_bytes(&mut reply.data.into())?)
    }

    pub async fn limits(self: &Arc<Self>) -> Result<LimitsExtension, Error> {
        let reply = answer_as!(
            self.extended(russh_sftp::extensions::LIMITS, Vec::new())
                .await,
            ExtendedReply
        )?;
        Ok(russh_sftp::de::from_bytes(&mut reply.data.into())?)
    }
}

/// An `SSH_FXP_WRITE` up to its data: length, type, id, handle, offset, data length.
fn write_header(id: u32, handle: &str, offset: u64, data_len: usize) -> Result<BytesMut, Error> {
    let too_long = || Error::Limited("a write too long for one SFTP packet".into());
    let header_len = 1 + 4 + 4 + handle.len() + 8 + 4;
    let length = u32::try_from(header_len + data_len).map_err(|_| too_long())?;
    let mut header = BytesMut::with_capacity(4 + header_len + data_len.min(COPY_WRITES_UP_TO));
    header.put_u32(length);
    header.put_u8(SSH_FXP_WRITE);
    header.put_u32(id);
    header.put_u32(u32::try_from(handle.len()).map_err(|_| too_long())?);
    header.put_slice(handle.as_bytes());
    header.put_u64(offset);
    header.put_u32(u32::try_from(data_len).map_err(|_| too_long())?);
    Ok(header)
}

/// SFTP packets cut out of a channel's data, which splits and joins them anywhere.
#[derive(Default)]
struct Frames {
    received: BytesMut,
}

impl Frames {
    fn push(&mut self, data: &[u8]) {
        self.received.extend_from_slice(data);
    }

    /// The next whole packet received, if there is one.
    fn next(&mut self) -> Option<Result<Packet, Error>> {
        let length = u32::from_be_bytes(self.received.get(..4)?.try_into().expect("4 bytes"));
        let length = length as usize;
        if self.received.len() < 4 + length {
            return None;
        }
        let _ = self.received.split_to(4);
        let mut packet = self.received.split_to(length).freeze();
        Some(Packet::try_from(&mut packet).map_err(Error::from))
    }
}

/// Reads the channel's data, cuts it into SFTP packets and answers the waiting requests, until
/// the channel ends or sends what is not SFTP; then fails every request still waiting.
async fn read_answers(mut channel: ChannelReadHalf, waiting: Arc<Waiting>) {
    let mut frames = Frames::default();
    'channel: while let Some(message) = channel.wait().await {
        match message {
            ChannelMsg::Data { data } => frames.push(&data),
            ChannelMsg::Eof | ChannelMsg::Close => break,
            _ => continue,
        }
        while let Some(packet) = frames.next() {
            match packet {
                Ok(packet) => waiting.answer(packet),
                Err(e) => {
                    log::warn!(
                        "the SFTP server sent a packet fsd cannot read ({e}); closing the session"
                    );
                    break 'channel;
                }
            }
        }
    }
    waiting.end();
}

#[cfg(test)]
mod tests {
    use russh_sftp::protocol::Write;

    use super::*;

    fn status_packet(id: u32) -> Packet {
        Packet::status(id, StatusCode::Ok, "", "")
    }

    #[test]
    fn a_framed_write_is_the_packet_russh_sftp_reads() {
        for len in [0, 1, 4096, COPY_WRITES_UP_TO + 1, 128 * 1024] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut packet = write_header(7, "\0\0\0\x05", 1 << 40, len).unwrap();
            packet.put_slice(&data);
            let mut frames = Frames::default();
            frames.push(&packet);
            let decoded = frames.next().expect("one whole packet").unwrap();
            let Packet::Write(Write {
                id,
                handle,
                offset,
                data: written,
            }) = decoded
            else {
                panic!("decoded {decoded:?}");
            };
            assert_eq!((id, handle.as_str(), offset), (7, "\0\0\0\x05", 1 << 40));
            assert_eq!(written, data, "{len} bytes");
            assert!(frames.next().is_none());
        }
    }

    #[test]
    fn packets_are_cut_out_however_the_channel_splits_them() {
        let mut stream = Vec::new();
        for id in 1..=20 {
            stream.extend_from_slice(&Bytes::try_from(status_packet(id)).unwrap());
        }
        for piece in [1, 3, 7, 40, stream.len()] {
            let mut frames = Frames::default();
            let mut ids = Vec::new();
            for data in stream.chunks(piece) {
                frames.push(data);
                while let Some(packet) = frames.next() {
                    match packet.unwrap() {
                        Packet::Status(status) => ids.push(status.id),
                        other => panic!("decoded {other:?}"),
                    }
                }
            }
            assert_eq!(ids, (1..=20).collect::<Vec<_>>(), "pieces of {piece} bytes");
        }
    }

    #[tokio::test]
    async fn answers_go_to_their_request_and_an_ended_session_fails_the_rest() {
        let waiting = Waiting::new();
        let first = waiting.add(Some(1)).unwrap();
        let second = waiting.add(Some(2)).unwrap();
        let given_up = waiting.add(Some(3)).unwrap();
        drop(given_up);
        waiting.forget(Some(3));
        waiting.answer(status_packet(2));
        waiting.answer(status_packet(3));
        match second.await.unwrap() {
            Packet::Status(status) => assert_eq!(status.id, 2),
            other => panic!("answered {other:?}"),
        }
        waiting.end();
        assert!(first.await.is_err(), "the session ended before its answer");
        assert!(
            waiting.add(Some(4)).is_none(),
            "no request once the session ended"
        );
    }

    #[tokio::test]
    async fn a_stuck_session_times_its_requests_out_and_only_a_quiet_one_is_probed() {
        let quiet = Duration::from_secs(5);
        let waiting = Waiting::new();
        let now = Instant::now();
        assert!(!waiting.is_quiet(quiet, now), "just started");
        assert!(waiting.is_quiet(quiet, now + quiet));
        let held = waiting.add(Some(1)).unwrap();
        assert!(
            !waiting.is_quiet(quiet, now + quiet),
            "a request held is bounded by its own deadline"
        );
        waiting.answer(status_packet(1));
        held.await.unwrap();
        let answered = Instant::now();
        assert!(
            !waiting.is_quiet(quiet, answered + quiet / 2),
            "heard from since"
        );
        assert!(waiting.is_quiet(quiet, answered + quiet));

        let held = waiting.add(Some(2)).unwrap();
        waiting.give_up();
        assert!(held.await.is_err(), "ended at once");
        assert!(
            matches!(waiting.ended_error(), Error::Timeout),
            "and timed out"
        );
        assert!(
            !waiting.is_quiet(quiet, answered + quiet),
            "an ended session is not probed"
        );
        let closed = Waiting::new();
        closed.end();
        assert!(matches!(closed.ended_error(), Error::UnexpectedBehavior(_)));
    }
}
