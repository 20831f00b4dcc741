// SPDX-License-Identifier: MIT
//! shmchan for Rust: zero-copy shared-memory channels shared with Python (and C/C++) processes.
//!
//! The C core (`csrc/`) is compiled into this crate by `build.rs`; this crate adds a safe API in
//! which a loan (a reserved slot) and a received message borrow their writer/reader mutably, so
//! neither can outlive its slot, nor can two be alive at once on the same end:
//!
//! ```compile_fail
//! # use shmchan::*;
//! # let ch = Channel::open("x", None).unwrap();
//! let mut r = ch.reader().unwrap();
//! let msg = r.recv(None).unwrap();
//! drop(r);            // error: `r` is still borrowed by `msg`
//! let _ = msg.bytes();
//! ```
//!
//! ```compile_fail
//! # use shmchan::*;
//! let data: &[u8];
//! {
//!     let ch = Channel::open("x", None).unwrap();
//!     let mut r = ch.reader().unwrap();
//!     let msg = r.recv(None).unwrap();
//!     data = msg.bytes(); // error: the bytes cannot outlive the message
//! }
//! let _ = data;
//! ```
//!
//! Besides single-producer single-consumer channels ([`Channel`]), the core has two more kinds:
//! [`Broadcast`] (one writer, up to `max_readers` readers that each see every message; a full ring
//! blocks the writer or, with [`Policy::Overwrite`], laps slow readers, who learn how many
//! messages they lost) and [`State`] (a board holding one value with a version, read by anyone,
//! never torn).
//!
//! Messages follow the FlatBuffers schemas in `schemas/` (see `docs/protocol.md`): [`frame`]
//! writes and decodes `Frame` messages in place, [`tensor`] the `Tensor` ones, and [`schema`] builds
//! and checks the `ChannelInfo` descriptor.

pub mod ffi;
pub mod frame;
pub mod interop;
pub mod media;
pub mod schema;
pub mod tensor;

#[allow(warnings, clippy::all)]
#[path = "generated/common_generated.rs"]
mod common_raw;
/// flatc (25.12.19) makes included files `use crate::<file>_generated::*` and expects the included
/// types at that path's top level; this shim puts them there.
mod common_generated {
    #[allow(unused_imports)]
    pub use crate::common_raw::shmchan::fb::*;
    #[allow(unused_imports)]
    pub use crate::common_raw::*;
}
#[allow(warnings, clippy::all)]
#[path = "generated/rational_generated.rs"]
mod rational_raw;
/// The same shim for rational.fbs (included by frame, packet and audio).
mod rational_generated {
    #[allow(unused_imports)]
    pub use crate::rational_raw::shmchan::fb::*;
    #[allow(unused_imports)]
    pub use crate::rational_raw::*;
}
#[allow(warnings, clippy::all)]
#[path = "generated/channel_info_generated.rs"]
mod channel_info_generated;
#[allow(warnings, clippy::all)]
#[path = "generated/frame_generated.rs"]
mod frame_generated;
#[allow(warnings, clippy::all)]
#[path = "generated/tensor_generated.rs"]
mod tensor_generated;
#[allow(warnings, clippy::all)]
#[path = "generated/packet_generated.rs"]
mod packet_generated;
#[allow(warnings, clippy::all)]
#[path = "generated/audio_generated.rs"]
mod audio_generated;
/// Release 1's Frame (schemas/evolution/frame_v1.fbs, namespace `frame_v1`): the old reader of the
/// evolution tests, which must still read every Frame this release writes.
#[allow(warnings, clippy::all)]
#[path = "generated/frame_v1_generated.rs"]
pub mod frame_v1_generated;
/// Payload schema identities (names, identifiers, fingerprints, signatures), generated.
#[allow(clippy::all)]
#[path = "generated/signatures.rs"]
pub mod signatures;

/// The flatc-generated FlatBuffers types (`shmchan.fb` namespace).
pub mod fb {
    pub use crate::channel_info_generated::shmchan::fb::*;
    pub use crate::common_raw::shmchan::fb::*;
    pub use crate::frame_generated::shmchan::fb::*;
    pub use crate::tensor_generated::shmchan::fb::*;
    pub use crate::packet_generated::shmchan::fb::*;
    pub use crate::audio_generated::shmchan::fb::*;
    pub use crate::rational_raw::shmchan::fb::*;
}

use std::ffi::{CStr, CString};
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::time::Duration;

/// Error codes of the C core (negated in return values).
pub mod code {
    pub const EBADMAGIC: i32 = 2001;
    pub const EVERSION: i32 = 2002;
    pub const ECORRUPT: i32 = 2003;
    pub const EPEERDEAD: i32 = 2004;
    pub const ENOTINIT: i32 = 2005;
    pub const EENDED: i32 = 2006;
    pub const EPINNED: i32 = 2007;
    pub const ENOREADERS: i32 = 2008;
    pub const ENOTREG: i32 = 2009;
}

/// What went wrong, by category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The peer (writer or reader) died while attached.
    PeerDead,
    /// The writer closed and every message was received.
    Ended,
    /// A wait ran out of time (or a zero timeout found nothing to do).
    Timeout,
    /// Another writer/reader is attached (or, broadcast, every reader place is taken).
    Busy,
    /// Broadcast, overwrite policy: the writer rewrote a message's slot while it was held, so
    /// what was read from it may be torn.
    Lapped,
    /// Not a channel, another layout version, or a payload schema that does not match.
    Incompatible,
    /// A shared field holds an impossible value.
    Corrupt,
    /// The channel does not exist.
    NotFound,
    /// A message or descriptor is malformed.
    Decode,
    /// Anything else (an errno).
    Os,
}

/// An error: its kind, the C return code (0 for errors found in Rust) and a sentence.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub code: i32,
    pub message: String,
}

impl Error {
    pub(crate) fn from_rc(rc: i32, what: &str) -> Error {
        let text = unsafe { CStr::from_ptr(ffi::shmchan_strerror(rc)) }.to_string_lossy().into_owned();
        let kind = match -rc {
            code::EPEERDEAD => ErrorKind::PeerDead,
            code::EENDED => ErrorKind::Ended,
            code::EBADMAGIC | code::EVERSION | code::ENOTINIT | code::ENOTREG => ErrorKind::Incompatible,
            code::ECORRUPT => ErrorKind::Corrupt,
            libc_errno::ETIMEDOUT | libc_errno::EAGAIN => ErrorKind::Timeout,
            libc_errno::EBUSY | code::ENOREADERS => ErrorKind::Busy,
            libc_errno::ESTALE => ErrorKind::Lapped,
            libc_errno::ENOENT => ErrorKind::NotFound,
            _ => ErrorKind::Os,
        };
        Error { kind, code: rc, message: format!("{what}: {text}") }
    }

    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, code: 0, message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const EINTR: i32 = 4;
    pub const EAGAIN: i32 = 11;
    pub const EBUSY: i32 = 16;
    pub const ENODATA: i32 = 61;
    pub const EMSGSIZE: i32 = 90;
    pub const ETIMEDOUT: i32 = 110;
    pub const ESTALE: i32 = 116;
}

fn timeout_ns(t: Option<Duration>) -> i64 {
    match t {
        None => -1,
        Some(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
    }
}

/// Repeats a blocking C call that a signal interrupted (`-EINTR`), with the time that is left.
fn retry_eintr(timeout: Option<Duration>, mut call: impl FnMut(i64) -> i32) -> i32 {
    let start = std::time::Instant::now();
    loop {
        let left = timeout.map(|t| t.saturating_sub(start.elapsed()));
        let rc = call(timeout_ns(left));
        if rc != -libc_errno::EINTR {
            return rc;
        }
    }
}

/// The kind of a channel, fixed when it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// One writer, one reader, lossless.
    #[default]
    Spsc,
    /// One writer, up to `max_readers` readers that each see every message.
    Broadcast,
    /// A board holding one value with a version.
    State,
}

impl Kind {
    pub fn code(self) -> u32 {
        match self {
            Kind::Spsc => ffi::SHMCHAN_KIND_SPSC,
            Kind::Broadcast => ffi::SHMCHAN_KIND_BROADCAST,
            Kind::State => ffi::SHMCHAN_KIND_STATE,
        }
    }

    pub fn from_code(code: u32) -> Option<Kind> {
        match code {
            ffi::SHMCHAN_KIND_SPSC => Some(Kind::Spsc),
            ffi::SHMCHAN_KIND_BROADCAST => Some(Kind::Broadcast),
            ffi::SHMCHAN_KIND_STATE => Some(Kind::State),
            _ => None,
        }
    }
}

/// What a broadcast writer does when the ring is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Lossless: the writer waits for the slowest live reader.
    #[default]
    Block,
    /// The writer never waits; a reader it laps skips ahead and learns how many messages it lost.
    Overwrite,
}

impl Policy {
    pub fn code(self) -> u32 {
        match self {
            Policy::Block => ffi::SHMCHAN_POLICY_BLOCK,
            Policy::Overwrite => ffi::SHMCHAN_POLICY_OVERWRITE,
        }
    }

    pub fn from_code(code: u32) -> Option<Policy> {
        match code {
            ffi::SHMCHAN_POLICY_BLOCK => Some(Policy::Block),
            ffi::SHMCHAN_POLICY_OVERWRITE => Some(Policy::Overwrite),
            _ => None,
        }
    }
}

/// Where a broadcast reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    /// With the newest message already sent (if any).
    #[default]
    Latest,
    /// With the oldest message still in the ring.
    Oldest,
}

impl Start {
    fn flags(self) -> u32 {
        match self {
            Start::Latest => ffi::SHMCHAN_START_LATEST,
            Start::Oldest => ffi::SHMCHAN_START_OLDEST,
        }
    }
}

/// Geometry and descriptor of a channel to create.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub slot_size: u64,
    pub capacity: u32,
    /// 0: 64 for slots under 4096 bytes, else 4096 (`shmchan_default_slot_align`)
    pub slot_align: u32,
    /// permission bits; 0: 0600
    pub mode: u32,
    /// immutable bytes stored with the channel (a ChannelInfo FlatBuffer: see [`schema`])
    pub descriptor: Option<Vec<u8>>,
    /// SPSC (the default), BROADCAST or STATE (see [`Broadcast::create`] and [`State::create`])
    pub kind: Kind,
    /// BROADCAST: reader places, 1 ..= 1024 (0 for the other kinds)
    pub max_readers: u32,
    /// BROADCAST: what a full ring does (Block for the other kinds)
    pub policy: Policy,
}

/// One reader place of a broadcast channel, as seen now (for monitoring).
pub type PlaceInfo = ffi::shmchan_place_info;

/// The channel's geometry, as read from its header.
pub type Info = ffi::shmchan_info;

/// An open channel (`/dev/shm/shmchan.<name>`). The creator removes the name when dropped.
pub struct Channel {
    ptr: NonNull<ffi::shmchan_channel>,
    name: String,
    unlink_on_drop: bool,
}

impl Channel {
    /// Creates channel `name`; fails if it exists. The name is removed when this handle drops
    /// (unless [`Channel::persist`] is called). A `name` with a `/` is the path of a file-backed
    /// channel.
    pub fn create(name: &str, cfg: &Config) -> Result<Channel> {
        let cname = CString::new(name).map_err(|_| Error::new(ErrorKind::Os, "name contains NUL"))?;
        let desc = cfg.descriptor.as_deref().unwrap_or(&[]);
        let c = ffi::shmchan_config {
            slot_size: cfg.slot_size,
            capacity: cfg.capacity,
            slot_align: cfg.slot_align,
            mode: cfg.mode,
            msync_policy: 0,
            descriptor_size: u32::try_from(desc.len())
                .map_err(|_| Error::new(ErrorKind::Os, "descriptor larger than 64 KiB"))?,
            descriptor: if desc.is_empty() { std::ptr::null() } else { desc.as_ptr().cast() },
            kind: cfg.kind.code(),
            max_readers: cfg.max_readers,
            policy: cfg.policy.code(),
            _reserved: 0,
        };
        let mut out = std::ptr::null_mut();
        let mut diag = ffi::shmchan_diag { message: [0; 256] };
        let rc = if name.contains('/') {
            unsafe { ffi::shmchan_create_file(cname.as_ptr(), &c, &mut out, &mut diag) }
        } else {
            unsafe { ffi::shmchan_create(cname.as_ptr(), &c, &mut out, &mut diag) }
        };
        if rc != 0 {
            return Err(Self::diag_error(rc, &format!("cannot create channel {name:?}"), &diag));
        }
        Ok(Channel { ptr: NonNull::new(out).expect("create returned NULL"), name: name.into(), unlink_on_drop: true })
    }

    /// Opens an existing channel, waiting up to `timeout` (None: 2 s) for a creator still setting it
    /// up. A `name` with a `/` is the path of a file-backed channel; `unix:SOCKET` attaches to a
    /// sealed channel served on that Unix socket.
    pub fn open(name: &str, timeout: Option<Duration>) -> Result<Channel> {
        let cname = CString::new(name).map_err(|_| Error::new(ErrorKind::Os, "name contains NUL"))?;
        let mut out = std::ptr::null_mut();
        let mut diag = ffi::shmchan_diag { message: [0; 256] };
        let t = timeout_ns(Some(timeout.unwrap_or(Duration::from_secs(2))));
        let rc = if let Some(sock) = name.strip_prefix("unix:") {
            let csock = CString::new(sock).map_err(|_| Error::new(ErrorKind::Os, "path contains NUL"))?;
            unsafe { ffi::shmchan_connect(csock.as_ptr(), t, 0, &mut out, &mut diag) }
        } else if name.contains('/') {
            unsafe { ffi::shmchan_open_file(cname.as_ptr(), t, &mut out, &mut diag) }
        } else {
            unsafe { ffi::shmchan_open(cname.as_ptr(), t, &mut out, &mut diag) }
        };
        if rc != 0 {
            return Err(Self::diag_error(rc, &format!("cannot open channel {name:?}"), &diag));
        }
        Ok(Channel { ptr: NonNull::new(out).expect("open returned NULL"), name: name.into(), unlink_on_drop: false })
    }

    fn diag_error(rc: i32, what: &str, diag: &ffi::shmchan_diag) -> Error {
        let mut e = Error::from_rc(rc, what);
        let d = unsafe { CStr::from_ptr(diag.message.as_ptr()) }.to_string_lossy();
        if !d.is_empty() {
            e.message = format!("{what}: {d}");
        }
        e
    }

    /// Keep the name when this (creator) handle drops.
    pub fn persist(&mut self) {
        self.unlink_on_drop = false;
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Geometry and identity from the header.
    pub fn info(&self) -> Info {
        let mut i = Info::default();
        unsafe { ffi::shmchan_info(self.ptr.as_ptr(), &mut i) };
        i
    }

    /// The descriptor given at creation (empty if none).
    pub fn descriptor(&self) -> Result<Vec<u8>> {
        let n = self.info().descriptor_size;
        let mut buf = vec![0u8; n as usize];
        let mut len = 0u64;
        let rc = unsafe { ffi::shmchan_read_descriptor(self.ptr.as_ptr(), buf.as_mut_ptr().cast(), n, &mut len) };
        if rc != 0 {
            return Err(Error::from_rc(rc, "cannot read the descriptor"));
        }
        buf.truncate(len as usize);
        Ok(buf)
    }

    /// The channel's kind (from its header).
    pub fn kind(&self) -> Kind {
        let k = unsafe { ffi::shmchan_kind(self.ptr.as_ptr()) };
        u32::try_from(k).ok().and_then(Kind::from_code).unwrap_or(Kind::Spsc)
    }

    /// Broadcast channels: every reader place and what it holds, as seen now (empty for the
    /// other kinds).
    pub fn reader_places(&self) -> Vec<PlaceInfo> {
        let n = self.info().max_readers;
        let mut v = vec![PlaceInfo::default(); n as usize];
        let rc = unsafe { ffi::shmchan_reader_places(self.ptr.as_ptr(), v.as_mut_ptr(), n) };
        v.truncate(usize::try_from(rc).unwrap_or(0).min(n as usize));
        v
    }

    /// Counters and positions.
    pub fn stats(&self) -> ffi::shmchan_stats {
        let mut s = ffi::shmchan_stats::default();
        unsafe { ffi::shmchan_stats(self.ptr.as_ptr(), &mut s) };
        s
    }

    /// Attaches this process as the channel's one writer.
    pub fn writer(&self) -> Result<Writer<'_>> {
        let mut out = std::ptr::null_mut();
        let rc = unsafe { ffi::shmchan_writer_attach(self.ptr.as_ptr(), &mut out) };
        if rc != 0 {
            return Err(Error::from_rc(rc, &format!("cannot attach a writer to {:?}", self.name)));
        }
        Ok(Writer { ptr: out, _ch: PhantomData })
    }

    /// Attaches this process as the channel's one reader (on a broadcast channel: one of its
    /// readers, starting with the newest message).
    pub fn reader(&self) -> Result<Reader<'_>> {
        self.reader_from(Start::Latest)
    }

    /// Attaches a reader that starts where `start` says (broadcast channels; an SPSC reader always
    /// continues where the last one stopped). One reader per handle: open the channel again for
    /// another. Errors of kind [`ErrorKind::Busy`] when every reader place is taken.
    pub fn reader_from(&self, start: Start) -> Result<Reader<'_>> {
        let mut out = std::ptr::null_mut();
        let rc = unsafe { ffi::shmchan_reader_attach_ex(self.ptr.as_ptr(), start.flags(), &mut out) };
        if rc != 0 {
            let mut e = Error::from_rc(rc, &format!("cannot attach a reader to {:?}", self.name));
            if rc == -code::ENOREADERS {
                e.message = format!("cannot attach a reader to {:?}: all {} reader places are taken", self.name, self.info().max_readers);
            }
            return Err(e);
        }
        Ok(Reader { ptr: out, _ch: PhantomData })
    }

    fn expect_kind(self, want: Kind) -> Result<Channel> {
        let k = self.kind();
        if k != want {
            return Err(Error::new(
                ErrorKind::Incompatible,
                format!("channel {:?} is a {k:?} channel, not a {want:?} one", self.name),
            ));
        }
        Ok(self)
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        unsafe {
            if self.unlink_on_drop {
                ffi::shmchan_channel_unlink(self.ptr.as_ptr());
            }
            ffi::shmchan_close(self.ptr.as_ptr());
        }
    }
}

/// The channel's one writer; borrows the channel.
pub struct Writer<'c> {
    ptr: *mut ffi::shmchan_writer,
    _ch: PhantomData<&'c Channel>,
}

impl<'c> Writer<'c> {
    /// How long a blocked reserve polls before it sleeps.
    pub fn set_spin(&mut self, spin: Duration) {
        unsafe { ffi::shmchan_writer_set_spin(self.ptr, timeout_ns(Some(spin))) }
    }

    /// Reserves the next slot for a message of `nbytes`, waiting up to `timeout` (None: forever)
    /// while the ring is full. The loan borrows the writer: commit or drop (abort) it first.
    pub fn reserve(&mut self, nbytes: usize, timeout: Option<Duration>) -> Result<Loan<'_>> {
        let mut data = std::ptr::null_mut();
        let mut slot = 0u32;
        let w = self.ptr;
        let rc = retry_eintr(timeout, |t| unsafe { ffi::shmchan_reserve(w, nbytes as u64, t, &mut data, &mut slot) });
        if rc != 0 {
            return Err(Error::from_rc(rc, "cannot reserve a slot"));
        }
        let bytes = unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), nbytes) };
        Ok(Loan { w, bytes, slot, open: true })
    }

    /// Copies `data` into the next slot and commits it.
    pub fn send(&mut self, data: &[u8], timeout: Option<Duration>) -> Result<()> {
        let mut loan = self.reserve(data.len(), timeout)?;
        loan.bytes_mut().copy_from_slice(data);
        loan.commit()
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        unsafe { ffi::shmchan_writer_close(self.ptr) }
    }
}

/// A reserved slot: write it through [`Loan::bytes_mut`], then [`Loan::commit`]. Dropped without
/// commit, it is aborted (readers never see it).
pub struct Loan<'w> {
    w: *mut ffi::shmchan_writer,
    bytes: &'w mut [u8],
    slot: u32,
    open: bool,
}

impl Loan<'_> {
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.bytes
    }

    pub fn slot(&self) -> u32 {
        self.slot
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Publishes the whole reservation.
    pub fn commit(self) -> Result<()> {
        let n = self.bytes.len();
        self.commit_len(n)
    }

    /// Publishes the first `n` bytes.
    pub fn commit_len(mut self, n: usize) -> Result<()> {
        self.open = false;
        let rc = unsafe { ffi::shmchan_commit(self.w, n as u64) };
        if rc != 0 {
            return Err(Error::from_rc(rc, "commit failed"));
        }
        Ok(())
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        if self.open {
            unsafe { ffi::shmchan_abort(self.w) };
        }
    }
}

/// The channel's one reader; borrows the channel.
pub struct Reader<'c> {
    ptr: *mut ffi::shmchan_reader,
    _ch: PhantomData<&'c Channel>,
}

impl<'c> Reader<'c> {
    pub fn set_spin(&mut self, spin: Duration) {
        unsafe { ffi::shmchan_reader_set_spin(self.ptr, timeout_ns(Some(spin))) }
    }

    /// Takes the next message in place, waiting up to `timeout` (None: forever). Errors of kind
    /// [`ErrorKind::Ended`] when the writer closed and everything was received,
    /// [`ErrorKind::PeerDead`] when the writer died. The message is released when dropped.
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Msg<'_>> {
        let mut m = ffi::shmchan_msg::default();
        let r = self.ptr;
        let rc = retry_eintr(timeout, |t| unsafe { ffi::shmchan_peek(r, t, &mut m) });
        if rc != 0 {
            return Err(Error::from_rc(rc, "cannot receive"));
        }
        let bytes = unsafe { std::slice::from_raw_parts(m.data.cast::<u8>().cast_const(), m.len as usize) };
        Ok(Msg { r, pos: m.pos, lost: m.lost, bytes })
    }

    /// Copies the next message into `buf` and releases it; returns its length. Never returns a
    /// torn copy: on a broadcast channel with the overwrite policy, a message the writer rewrote
    /// during the copy counts as lost and the next one is taken. A message longer than `buf`
    /// stays in the channel (an error that says its length).
    pub fn recv_copy(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize> {
        let r = self.ptr;
        let mut len = 0u64;
        let cap = buf.len() as u64;
        let p = buf.as_mut_ptr().cast();
        let rc = retry_eintr(timeout, |t| unsafe { ffi::shmchan_recv(r, p, cap, &mut len, t) });
        if rc == -libc_errno::EMSGSIZE {
            return Err(Error::new(ErrorKind::Os, format!("the next message has {len} bytes; the buffer holds {cap}")));
        }
        if rc != 0 {
            return Err(Error::from_rc(rc, "cannot receive"));
        }
        Ok(len as usize)
    }

    /// Waits until a message can be taken, without taking it.
    pub fn wait_readable(&mut self, timeout: Option<Duration>) -> Result<()> {
        let r = self.ptr;
        let rc = retry_eintr(timeout, |t| unsafe { ffi::shmchan_wait_readable(r, t) });
        if rc != 0 {
            return Err(Error::from_rc(rc, "cannot wait for a message"));
        }
        Ok(())
    }

    /// Messages this reader lost since it attached because the writer lapped it (broadcast,
    /// overwrite policy; always 0 otherwise): those skipped, and those rewritten while held.
    pub fn lost(&self) -> u64 {
        unsafe { ffi::shmchan_reader_lost(self.ptr) }
    }

    /// The stream position of the next message [`Reader::recv`] takes (before any skip).
    pub fn position(&self) -> u64 {
        unsafe { ffi::shmchan_reader_position(self.ptr) }
    }

    /// Messages taken and not yet released.
    pub fn outstanding(&self) -> u64 {
        unsafe { ffi::shmchan_reader_outstanding(self.ptr) }
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        unsafe { ffi::shmchan_reader_close(self.ptr) }
    }
}

/// A received message: read-only bytes of its slot, released when dropped.
///
/// On a broadcast channel with the overwrite policy the writer may lap the reader and rewrite the
/// slot while the message is held: read what you need, *then* call [`Msg::check`] (or
/// [`Msg::release`]); only if it says the message is intact can what was read be trusted.
pub struct Msg<'r> {
    r: *mut ffi::shmchan_reader,
    pos: u64,
    lost: u32,
    bytes: &'r [u8],
}

impl<'r> Msg<'r> {
    /// The message's bytes, in place (they live as long as the message; see [`Msg::check`]).
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }

    /// Broadcast, overwrite policy: messages this reader lost just before this one because the
    /// writer lapped it (0 otherwise; saturates at `u32::MAX`).
    pub fn lost(&self) -> u32 {
        self.lost
    }

    /// Ok while the slot still holds this message; errors of kind [`ErrorKind::Lapped`] when a
    /// broadcast/overwrite writer rewrote it since it was taken (anything read from it may be
    /// torn). Always Ok on SPSC and broadcast/block channels.
    pub fn check(&self) -> Result<()> {
        let rc = unsafe { ffi::shmchan_check(self.r, self.pos) };
        if rc != 0 {
            return Err(Error::from_rc(rc, &format!("message {}", self.pos)));
        }
        Ok(())
    }

    /// Whether [`Msg::check`] is Ok.
    pub fn is_intact(&self) -> bool {
        self.check().is_ok()
    }

    /// Releases the message now, saying whether it was intact to the end (an error of kind
    /// [`ErrorKind::Lapped`] if the writer rewrote it while it was held; it is released either way
    /// and counts as lost). Dropping a message releases it without telling.
    pub fn release(self) -> Result<()> {
        let rc = unsafe { ffi::shmchan_release(self.r, self.pos) };
        let pos = self.pos;
        std::mem::forget(self);
        if rc != 0 {
            return Err(Error::from_rc(rc, &format!("message {pos} was overwritten while it was held")));
        }
        Ok(())
    }

    /// Position in the stream.
    pub fn seq(&self) -> u64 {
        self.pos
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl Drop for Msg<'_> {
    fn drop(&mut self) {
        unsafe { ffi::shmchan_release(self.r, self.pos) };
    }
}

/// Geometry of a broadcast channel to create (see [`Broadcast::create`]).
#[derive(Debug, Clone)]
pub struct BroadcastConfig {
    pub slot_size: u64,
    /// a power of two, at least 2
    pub capacity: u32,
    /// readers attached at once, 1 ..= 1024 (default 8)
    pub max_readers: u32,
    pub policy: Policy,
    /// 0: 64 for slots under 4096 bytes, else 4096 (`shmchan_default_slot_align`)
    pub slot_align: u32,
    /// permission bits; 0: 0600
    pub mode: u32,
    /// a ChannelInfo FlatBuffer (kind Broadcast: see [`schema::encode_channel_info`])
    pub descriptor: Option<Vec<u8>>,
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        BroadcastConfig {
            slot_size: 0,
            capacity: 0,
            max_readers: 8,
            policy: Policy::Block,
            slot_align: 0,
            mode: 0,
            descriptor: None,
        }
    }
}

/// A one-writer, many-reader channel. It is a [`Channel`] (through `Deref`): take its writer with
/// `writer()`, and readers with [`Broadcast::reader`] (one per handle).
pub struct Broadcast {
    ch: Channel,
}

impl Broadcast {
    /// Creates broadcast channel `name`; the name is removed when this handle drops.
    pub fn create(name: &str, cfg: &BroadcastConfig) -> Result<Broadcast> {
        let c = Config {
            slot_size: cfg.slot_size,
            capacity: cfg.capacity,
            slot_align: cfg.slot_align,
            mode: cfg.mode,
            descriptor: cfg.descriptor.clone(),
            kind: Kind::Broadcast,
            max_readers: cfg.max_readers,
            policy: cfg.policy,
        };
        Ok(Broadcast { ch: Channel::create(name, &c)? })
    }

    /// Opens an existing broadcast channel (an error of kind [`ErrorKind::Incompatible`] for
    /// another kind).
    pub fn open(name: &str, timeout: Option<Duration>) -> Result<Broadcast> {
        Ok(Broadcast { ch: Channel::open(name, timeout)?.expect_kind(Kind::Broadcast)? })
    }

    /// Attaches a reader starting where `start` says.
    pub fn reader(&self, start: Start) -> Result<Reader<'_>> {
        self.ch.reader_from(start)
    }

    pub fn policy(&self) -> Policy {
        Policy::from_code(self.ch.info().policy).unwrap_or(Policy::Block)
    }

    pub fn max_readers(&self) -> u32 {
        self.ch.info().max_readers
    }

    /// How many readers are attached now.
    pub fn attached_readers(&self) -> usize {
        self.ch.reader_places().iter().filter(|p| p.state == 1).count()
    }

    /// The channel handle.
    pub fn channel(&self) -> &Channel {
        &self.ch
    }
}

impl std::ops::Deref for Broadcast {
    type Target = Channel;
    fn deref(&self) -> &Channel {
        &self.ch
    }
}

/// A state board: one writer publishes values (each gets the next version: 1, 2, ...), any number
/// of handles read the newest one, a private copy that is never torn. It is a [`Channel`] (through
/// `Deref`) for `info()`, `stats()`, `channel_info()`.
pub struct State {
    ch: Channel,
}

/// Slots of a state board: the writer fills the one readers are not sent to.
const STATE_SLOTS: u32 = 2;
/// The slot alignment Python's `State.create` uses (so a board looks the same from any language).
const STATE_ALIGN: u32 = 64;

impl State {
    /// Creates board `name` for values of at most `max_size` bytes; `descriptor` is a ChannelInfo
    /// of kind State (with `numpy_descr` for Python to see the value's dtype). The name is removed
    /// when this handle drops.
    pub fn create(name: &str, max_size: u64, descriptor: Option<Vec<u8>>) -> Result<State> {
        let c = Config {
            slot_size: max_size,
            capacity: STATE_SLOTS,
            slot_align: STATE_ALIGN,
            descriptor,
            kind: Kind::State,
            ..Default::default()
        };
        Ok(State { ch: Channel::create(name, &c)? })
    }

    /// The geometry [`State::create`] gives a board of `max_size` bytes: (slot_size, capacity, slot_align).
    pub fn geometry(max_size: u64) -> (u64, u32, u32) {
        (max_size, STATE_SLOTS, STATE_ALIGN)
    }

    /// Opens an existing board (an error of kind [`ErrorKind::Incompatible`] for another kind).
    pub fn open(name: &str, timeout: Option<Duration>) -> Result<State> {
        Ok(State { ch: Channel::open(name, timeout)?.expect_kind(Kind::State)? })
    }

    /// The largest value in bytes.
    pub fn max_size(&self) -> u64 {
        self.ch.info().slot_size
    }

    /// The version of the newest value (0: nothing published yet).
    pub fn version(&self) -> u64 {
        unsafe { ffi::shmchan_state_version(self.ch.ptr.as_ptr()) }
    }

    /// Copies the newest value into `buf`: `(length, version)`, `(0, 0)` before the first
    /// publish. Never torn (the copy is checked and retried). A value longer than `buf` is an
    /// error that says its length.
    pub fn read(&self, buf: &mut [u8]) -> Result<(usize, u64)> {
        let (mut len, mut version) = (0u64, 0u64);
        let rc = unsafe {
            ffi::shmchan_state_read(self.ch.ptr.as_ptr(), buf.as_mut_ptr().cast(), buf.len() as u64, &mut len, &mut version)
        };
        match -rc {
            0 => Ok((len as usize, version)),
            libc_errno::ENODATA => Ok((0, 0)),
            libc_errno::EMSGSIZE => Err(Error::new(
                ErrorKind::Os,
                format!("state board {:?} holds a value of {len} bytes; the buffer holds {}", self.ch.name, buf.len()),
            )),
            _ => Err(Error::from_rc(rc, &format!("cannot read state board {:?}", self.ch.name))),
        }
    }

    /// The newest value as a vector, and its version (empty and 0 before the first publish).
    pub fn read_vec(&self) -> Result<(Vec<u8>, u64)> {
        let mut v = vec![0u8; self.max_size() as usize];
        let (n, version) = self.read(&mut v)?;
        v.truncate(n);
        Ok((v, version))
    }

    /// Sleeps (in the kernel, no spinning) until the version differs from `version`; returns the
    /// new one. Errors of kind [`ErrorKind::Timeout`] after `timeout` (None: never),
    /// [`ErrorKind::PeerDead`] when the writer died attached.
    pub fn wait_for_change(&self, version: u64, timeout: Option<Duration>) -> Result<u64> {
        let ch = self.ch.ptr.as_ptr();
        let mut now = 0u64;
        let rc = retry_eintr(timeout, |t| unsafe { ffi::shmchan_state_wait(ch, version, t, &mut now) });
        if rc != 0 {
            return Err(Error::from_rc(rc, &format!("cannot wait on state board {:?}", self.ch.name)));
        }
        Ok(now)
    }

    /// Attaches this process as the board's one writer.
    pub fn writer(&self) -> Result<StateWriter<'_>> {
        Ok(StateWriter { w: self.ch.writer()?, st: self })
    }

    /// The channel handle.
    pub fn channel(&self) -> &Channel {
        &self.ch
    }
}

impl std::ops::Deref for State {
    type Target = Channel;
    fn deref(&self) -> &Channel {
        &self.ch
    }
}

/// The board's one writer: publishing never waits.
pub struct StateWriter<'c> {
    w: Writer<'c>,
    st: &'c State,
}

impl StateWriter<'_> {
    /// Publishes `value` (at most the board's max size) and returns its version.
    pub fn write(&mut self, value: &[u8]) -> Result<u64> {
        self.w.send(value, Some(Duration::ZERO))?;
        Ok(self.st.version())
    }

    /// Reserves the slot of the next version, to fill in place: commit the loan to publish it
    /// (then [`StateWriter::version`] is its version); dropping it publishes nothing.
    pub fn reserve(&mut self, nbytes: usize) -> Result<Loan<'_>> {
        self.w.reserve(nbytes, Some(Duration::ZERO))
    }

    /// The version of the newest value.
    pub fn version(&self) -> u64 {
        self.st.version()
    }
}

/// Removes channel `name` (processes that have it open keep working).
pub fn unlink(name: &str) -> Result<()> {
    let cname = CString::new(name).map_err(|_| Error::new(ErrorKind::Os, "name contains NUL"))?;
    let rc = unsafe { ffi::shmchan_unlink(cname.as_ptr()) };
    if rc != 0 {
        return Err(Error::from_rc(rc, "cannot unlink"));
    }
    Ok(())
}

/// The pixel test pattern every peer uses: byte `i` of frame `seq` is `base(i) + 13*seq (mod 256)`.
pub mod pattern {
    /// `base(i) = 7*i + (i >> 10) (mod 256)`
    pub fn base(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i.wrapping_mul(7).wrapping_add(i >> 10)) as u8).collect()
    }

    pub fn fill(dst: &mut [u8], base: &[u8], seq: u64) {
        let k = (seq.wrapping_mul(13)) as u8;
        for (d, b) in dst.iter_mut().zip(base) {
            *d = b.wrapping_add(k);
        }
    }
}

#[cfg(test)]
mod tests;
