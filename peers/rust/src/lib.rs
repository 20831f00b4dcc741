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
//! Messages follow the FlatBuffers schemas in `schemas/` (see `docs/protocol.md`): [`frame`]
//! writes and decodes `Frame` messages in place, [`tensor`] the `Tensor` ones, and [`schema`] builds
//! and checks the `ChannelInfo` descriptor.

pub mod ffi;
pub mod frame;
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
#[path = "generated/channel_info_generated.rs"]
mod channel_info_generated;
#[allow(warnings, clippy::all)]
#[path = "generated/frame_generated.rs"]
mod frame_generated;
#[allow(warnings, clippy::all)]
#[path = "generated/tensor_generated.rs"]
mod tensor_generated;
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
    /// Another writer/reader is attached.
    Busy,
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
            code::EBADMAGIC | code::EVERSION | code::ENOTINIT => ErrorKind::Incompatible,
            code::ECORRUPT => ErrorKind::Corrupt,
            libc_errno::ETIMEDOUT | libc_errno::EAGAIN => ErrorKind::Timeout,
            libc_errno::EBUSY => ErrorKind::Busy,
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
    pub const ETIMEDOUT: i32 = 110;
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

/// Geometry and descriptor of a channel to create.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub slot_size: u64,
    pub capacity: u32,
    /// 0: the page size
    pub slot_align: u32,
    /// permission bits; 0: 0600
    pub mode: u32,
    /// immutable bytes stored with the channel (a ChannelInfo FlatBuffer: see [`schema`])
    pub descriptor: Option<Vec<u8>>,
}

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
    /// (unless [`Channel::persist`] is called).
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
        };
        let mut out = std::ptr::null_mut();
        let mut diag = ffi::shmchan_diag { message: [0; 256] };
        let rc = unsafe { ffi::shmchan_create(cname.as_ptr(), &c, &mut out, &mut diag) };
        if rc != 0 {
            return Err(Self::diag_error(rc, &format!("cannot create channel {name:?}"), &diag));
        }
        Ok(Channel { ptr: NonNull::new(out).expect("create returned NULL"), name: name.into(), unlink_on_drop: true })
    }

    /// Opens an existing channel, waiting up to `timeout` (None: 2 s) for a creator still setting it up.
    pub fn open(name: &str, timeout: Option<Duration>) -> Result<Channel> {
        let cname = CString::new(name).map_err(|_| Error::new(ErrorKind::Os, "name contains NUL"))?;
        let mut out = std::ptr::null_mut();
        let mut diag = ffi::shmchan_diag { message: [0; 256] };
        let t = timeout_ns(Some(timeout.unwrap_or(Duration::from_secs(2))));
        let rc = unsafe { ffi::shmchan_open(cname.as_ptr(), t, &mut out, &mut diag) };
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

    /// Attaches this process as the channel's one reader.
    pub fn reader(&self) -> Result<Reader<'_>> {
        let mut out = std::ptr::null_mut();
        let rc = unsafe { ffi::shmchan_reader_attach(self.ptr.as_ptr(), &mut out) };
        if rc != 0 {
            return Err(Error::from_rc(rc, &format!("cannot attach a reader to {:?}", self.name)));
        }
        Ok(Reader { ptr: out, _ch: PhantomData })
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
        Ok(Msg { r, pos: m.pos, bytes })
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        unsafe { ffi::shmchan_reader_close(self.ptr) }
    }
}

/// A received message: read-only bytes of its slot, released when dropped.
pub struct Msg<'r> {
    r: *mut ffi::shmchan_reader,
    pos: u64,
    bytes: &'r [u8],
}

impl<'r> Msg<'r> {
    /// The message's bytes, in place (they live as long as the message).
    pub fn bytes(&self) -> &[u8] {
        self.bytes
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
