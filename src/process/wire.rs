//! The wire between a pool (or `Process`) and a worker: one serde codec, the
//! messages, and a framed channel (u32 little-endian length + message) whose reads
//! and writes wake up periodically so that a peer that died can be noticed even
//! while something else (a task's child) keeps the socket open.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::MessageFailure;
use crate::sync::Wait;

/// Serialises `v` with the crate's wire codec (postcard: compact varints, no
/// schema on the wire; both ends run the same code, checked in the handshake).
pub(crate) fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, String> {
    // Small messages (most tasks' inputs and outcomes) without regrowing.
    postcard::to_extend(v, Vec::with_capacity(32)).map_err(|e| e.to_string())
}

/// Deserialises a value written by [`encode`].
pub(crate) fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    postcard::from_bytes(b).map_err(|e| e.to_string())
}

/// Appends the encoding of `v` to `out`.
fn encode_into<T: Serialize>(out: &mut Vec<u8>, v: &T) -> Result<(), String> {
    let buf = std::mem::take(out);
    *out = postcard::to_extend(v, buf).map_err(|e| e.to_string())?;
    Ok(())
}

/// Identity of the code a process runs, compared in the handshake: the files
/// mapped for the executable and for the object holding this crate (device and
/// inode as `/proc/self/maps` shows them), and the anchor function's offset in the
/// latter.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct Image {
    pub(crate) exe: (String, u64),
    pub(crate) object: (String, u64),
    pub(crate) anchor_offset: usize,
    /// For messages only (not compared).
    pub(crate) exe_path: String,
    /// For messages only (not compared).
    pub(crate) object_path: String,
}

impl Image {
    pub(crate) fn same_code(&self, other: &Image) -> bool {
        self.exe == other.exe
            && self.object == other.object
            && self.anchor_offset == other.anchor_offset
    }

    /// Whether this crate's code is part of the executable itself (not of a shared
    /// library or Python extension), which is what spawn re-executes.
    pub(crate) fn crate_in_executable(&self) -> bool {
        self.exe == self.object && self.object.1 != 0
    }
}

impl std::fmt::Display for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "executable {} (device {}, inode {}), this crate in {} (device {}, inode {}, anchor at +{:#x})",
            self.exe_path,
            self.exe.0,
            self.exe.1,
            self.object_path,
            self.object.0,
            self.object.1,
            self.anchor_offset
        )
    }
}

/// Parent → worker. The payload is borrowed when sending (the pool keeps it, to
/// hand it to another worker if this one dies before beginning the task) and owned
/// when received; both encode the same.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum ToWorker<'a> {
    Hello {
        image: Image,
    },
    /// Run the trampoline at `tramp` on `payload` with the function at `func` (both
    /// offsets from the anchor function). The worker records `id` in its started
    /// page before it calls anything.
    Task {
        id: u64,
        tramp: isize,
        func: isize,
        payload: Cow<'a, [u8]>,
    },
    /// Drop cached mappings of segments that were removed or replaced, then answer
    /// `Swept`.
    Sweep,
    Exit,
    /// Look at the lane again: tasks were published, or room made for results.
    Wake,
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum FromWorker {
    Ready {
        pid: u32,
        /// The worker mapped the lane it was sent (else tasks must come over the
        /// socket, and every task sent counts as begun).
        lane: bool,
    },
    Refused {
        worker: Image,
    },
    Done {
        id: u64,
        outcome: Result<Vec<u8>, MessageFailure>,
    },
    /// Answer to `Sweep`.
    Swept,
    /// Look at the lane again: results were published (or the worker waits for
    /// room for one).
    Wake,
}

/// Why a channel operation gave up.
#[derive(Debug)]
pub(crate) enum Lost {
    /// End of file, a reset connection, or `tick` said the peer is gone.
    Closed,
    /// The deadline passed (nothing is lost: call again).
    Timeout,
    /// Bytes that are not a message.
    Garbled(String),
}

/// Largest frame accepted (a corrupt length must not allocate the machine).
const MAX_FRAME: usize = 1 << 31;

/// A framed, bidirectional message channel over a Unix stream socket.
#[derive(Debug)]
pub(crate) struct Channel {
    stream: UnixStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    out: Vec<u8>,
}

impl Channel {
    /// Wraps `stream`; reads and writes block at most `wake` at a time (then the
    /// caller's `tick` runs), `None`: block indefinitely.
    pub(crate) fn new(stream: UnixStream, wake: Option<Duration>) -> io::Result<Channel> {
        stream.set_read_timeout(wake)?;
        stream.set_write_timeout(wake)?;
        Ok(Channel {
            stream,
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            out: Vec::new(),
        })
    }

    /// Whether the other end has closed the socket (a worker that died while
    /// idle, unless something it started still holds the socket). Never blocks.
    pub(crate) fn peer_closed(&self) -> bool {
        crate::sys::process::peer_hung_up(std::os::fd::AsFd::as_fd(&self.stream))
    }

    /// Sends one message. `tick` runs whenever a write has been blocked for the
    /// wake interval; returning `false` abandons the send as `Closed`.
    pub(crate) fn send<T: Serialize>(
        &mut self,
        msg: &T,
        tick: &mut dyn FnMut() -> bool,
    ) -> Result<(), Lost> {
        self.out.clear();
        self.out.extend_from_slice(&[0; 4]);
        encode_into(&mut self.out, msg).map_err(Lost::Garbled)?;
        let len = u32::try_from(self.out.len() - 4)
            .ok()
            .filter(|&l| (l as usize) < MAX_FRAME)
            .ok_or_else(|| Lost::Garbled(format!("message of {} bytes", self.out.len())))?;
        self.out[..4].copy_from_slice(&len.to_le_bytes());
        let mut sent = 0;
        while sent < self.out.len() {
            match self.stream.write(&self.out[sent..]) {
                Ok(0) => return Err(Lost::Closed),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    if !tick() {
                        return Err(Lost::Closed);
                    }
                }
                Err(_) => return Err(Lost::Closed),
            }
        }
        Ok(())
    }

    /// Receives one message, waiting until `deadline` runs out. `tick`
    /// runs whenever nothing arrived for the wake interval; returning `false`
    /// abandons the wait as `Closed`.
    pub(crate) fn recv<T: DeserializeOwned>(
        &mut self,
        deadline: Wait,
        tick: &mut dyn FnMut() -> bool,
    ) -> Result<T, Lost> {
        loop {
            if let Some(len) = self.complete_frame()? {
                let body = &self.buf[self.start + 4..self.start + 4 + len];
                let msg = decode(body).map_err(Lost::Garbled);
                self.start += 4 + len;
                return msg;
            }
            if deadline.expired() {
                return Err(Lost::Timeout);
            }
            self.make_room();
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(Lost::Closed),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    if !tick() {
                        return Err(Lost::Closed);
                    }
                }
                Err(_) => return Err(Lost::Closed),
            }
        }
    }

    /// Length of the frame at `start` if all of it is buffered.
    fn complete_frame(&mut self) -> Result<Option<usize>, Lost> {
        let have = self.end - self.start;
        if have < 4 {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&self.buf[self.start..self.start + 4]);
        let len = u32::from_le_bytes(len) as usize;
        if len >= MAX_FRAME {
            return Err(Lost::Garbled(format!("frame length {len}")));
        }
        if have < 4 + len {
            // Make sure the whole frame will fit once it arrives.
            if self.buf.len() < 4 + len {
                self.buf.resize(4 + len, 0);
            }
            return Ok(None);
        }
        Ok(Some(len))
    }

    /// Moves buffered bytes to the front so that there is space to read into.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                let n = self.buf.len();
                self.buf.resize(2 * n, 0);
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_in_pieces_and_large() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut tx = Channel::new(a, Some(Duration::from_millis(20))).unwrap();
        let mut rx = Channel::new(b, Some(Duration::from_millis(20))).unwrap();
        let big = vec![7u8; 300_000];
        let t = std::thread::spawn(move || {
            for i in 0..3u64 {
                tx.send(
                    &ToWorker::Task {
                        id: i,
                        tramp: -1,
                        func: 2,
                        payload: Cow::Borrowed(&big),
                    },
                    &mut || true,
                )
                .unwrap();
            }
        });
        for i in 0..3u64 {
            match rx.recv::<ToWorker>(Wait::Forever, &mut || true).unwrap() {
                ToWorker::Task { id, payload, .. } => {
                    assert_eq!(id, i);
                    assert_eq!(payload.len(), 300_000);
                }
                other => panic!("{other:?}"),
            }
        }
        t.join().unwrap();
        // The peer is gone: end of file.
        assert!(matches!(
            rx.recv::<ToWorker>(Wait::Forever, &mut || true),
            Err(Lost::Closed)
        ));
    }

    #[test]
    fn a_silent_peer_times_out_and_tick_can_give_up() {
        let (_a, b) = UnixStream::pair().unwrap();
        let mut rx = Channel::new(b, Some(Duration::from_millis(5))).unwrap();
        let soon = Wait::timeout(Duration::from_millis(30));
        assert!(matches!(
            rx.recv::<ToWorker>(soon, &mut || true),
            Err(Lost::Timeout)
        ));
        let mut ticks = 0;
        assert!(matches!(
            rx.recv::<ToWorker>(Wait::Forever, &mut || {
                ticks += 1;
                ticks < 3
            }),
            Err(Lost::Closed)
        ));
    }
}
