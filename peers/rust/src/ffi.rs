// SPDX-License-Identifier: MIT
//! Raw declarations of `csrc/include/shmchan.h`: checked against the C sizes by the tests, and
//! every declaration against the header by `tests/test_api_copies.py`.
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_int, c_void};

#[repr(C)]
pub struct shmchan_channel {
    _private: [u8; 0],
}
#[repr(C)]
pub struct shmchan_writer {
    _private: [u8; 0],
}
#[repr(C)]
pub struct shmchan_reader {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmchan_config {
    pub slot_size: u64,
    pub capacity: u32,
    pub slot_align: u32,
    pub mode: u32,
    pub msync_policy: u32,
    pub descriptor_size: u32,
    pub descriptor: *const c_void,
    /// enum shmchan_kind; 0 = SPSC
    pub kind: u32,
    /// BROADCAST: reader places, 1 ..= 1024; 0 for the other kinds
    pub max_readers: u32,
    /// BROADCAST: enum shmchan_policy; 0 for the other kinds
    pub policy: u32,
    /// must be 0
    pub _reserved: u32,
}

#[repr(C)]
pub struct shmchan_diag {
    pub message: [c_char; 256],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct shmchan_info {
    pub version_major: u16,
    pub version_minor: u16,
    pub capacity: u32,
    pub slot_size: u64,
    pub slot_stride: u64,
    pub slot_align: u32,
    pub msync_policy: u32,
    pub data_offset: u64,
    pub total_size: u64,
    pub created_ns: u64,
    pub creator_pid: u32,
    pub is_creator: i32,
    pub descriptor_size: u64,
    /// a sealed memfd channel
    pub sealed: i32,
    /// enum shmchan_kind
    pub kind: u32,
    /// BROADCAST: reader places
    pub max_readers: u32,
    /// BROADCAST: enum shmchan_policy
    pub policy: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct shmchan_stats {
    pub head: u64,
    pub tail: u64,
    pub messages_written: u64,
    pub bytes_written: u64,
    pub full_waits: u64,
    pub aborts: u64,
    pub messages_read: u64,
    pub bytes_read: u64,
    pub empty_waits: u64,
    pub writer_state: u32,
    pub reader_state: u32,
    pub writer_pid: u32,
    pub reader_pid: u32,
    pub writer_alive: i32,
    pub reader_alive: i32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shmchan_msg {
    pub pos: u64,
    pub len: u64,
    pub slot: u32,
    /// BROADCAST/OVERWRITE: messages skipped just before this one (saturates at u32::MAX)
    pub lost: u32,
    pub data: *mut c_void,
}

impl Default for shmchan_msg {
    fn default() -> Self {
        shmchan_msg { pos: 0, len: 0, slot: 0, lost: 0, data: std::ptr::null_mut() }
    }
}

/// One broadcast reader place, for monitoring (`shmchan_reader_places`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct shmchan_place_info {
    pub index: u32,
    /// 0 free, 1 attached, 2 closed (free)
    pub state: u32,
    pub pid: u32,
    /// attached and its liveness lock is held
    pub alive: i32,
    pub cursor: u64,
    pub messages: u64,
    pub bytes: u64,
    pub lost: u64,
    pub empty_waits: u64,
}

pub const SHMCHAN_KIND_SPSC: u32 = 1;
pub const SHMCHAN_KIND_BROADCAST: u32 = 2;
pub const SHMCHAN_KIND_STATE: u32 = 3;
pub const SHMCHAN_POLICY_BLOCK: u32 = 0;
pub const SHMCHAN_POLICY_OVERWRITE: u32 = 1;
pub const SHMCHAN_START_LATEST: u32 = 0;
pub const SHMCHAN_START_OLDEST: u32 = 1;

extern "C" {
    pub fn shmchan_strerror(err: c_int) -> *const c_char;
    pub fn shmchan_default_slot_align(slot_size: u64) -> u32;
    pub fn shmchan_create(
        name: *const c_char,
        cfg: *const shmchan_config,
        out: *mut *mut shmchan_channel,
        diag: *mut shmchan_diag,
    ) -> c_int;
    pub fn shmchan_open(
        name: *const c_char,
        timeout_ns: i64,
        out: *mut *mut shmchan_channel,
        diag: *mut shmchan_diag,
    ) -> c_int;
    pub fn shmchan_create_file(
        path: *const c_char,
        cfg: *const shmchan_config,
        out: *mut *mut shmchan_channel,
        diag: *mut shmchan_diag,
    ) -> c_int;
    pub fn shmchan_open_file(
        path: *const c_char,
        timeout_ns: i64,
        out: *mut *mut shmchan_channel,
        diag: *mut shmchan_diag,
    ) -> c_int;
    pub fn shmchan_connect(
        path: *const c_char,
        timeout_ns: i64,
        flags: u32,
        out: *mut *mut shmchan_channel,
        diag: *mut shmchan_diag,
    ) -> c_int;
    pub fn shmchan_close(ch: *mut shmchan_channel);
    pub fn shmchan_channel_unlink(ch: *mut shmchan_channel) -> c_int;
    pub fn shmchan_unlink(name: *const c_char) -> c_int;
    pub fn shmchan_info(ch: *const shmchan_channel, out: *mut shmchan_info) -> c_int;
    pub fn shmchan_stats(ch: *const shmchan_channel, out: *mut shmchan_stats) -> c_int;
    pub fn shmchan_kind(ch: *const shmchan_channel) -> c_int;
    pub fn shmchan_read_descriptor(ch: *const shmchan_channel, buf: *mut c_void, cap: u64, len: *mut u64) -> c_int;

    pub fn shmchan_writer_attach(ch: *mut shmchan_channel, out: *mut *mut shmchan_writer) -> c_int;
    pub fn shmchan_writer_close(w: *mut shmchan_writer);
    pub fn shmchan_writer_set_spin(w: *mut shmchan_writer, spin_ns: i64);
    pub fn shmchan_reserve(
        w: *mut shmchan_writer,
        nbytes: u64,
        timeout_ns: i64,
        data: *mut *mut c_void,
        slot: *mut u32,
    ) -> c_int;
    pub fn shmchan_commit(w: *mut shmchan_writer, nbytes: u64) -> c_int;
    pub fn shmchan_abort(w: *mut shmchan_writer) -> c_int;

    pub fn shmchan_reader_attach(ch: *mut shmchan_channel, out: *mut *mut shmchan_reader) -> c_int;
    pub fn shmchan_reader_close(r: *mut shmchan_reader);
    pub fn shmchan_reader_set_spin(r: *mut shmchan_reader, spin_ns: i64);
    pub fn shmchan_peek(r: *mut shmchan_reader, timeout_ns: i64, msg: *mut shmchan_msg) -> c_int;
    pub fn shmchan_release(r: *mut shmchan_reader, pos: u64) -> c_int;
    pub fn shmchan_recv(r: *mut shmchan_reader, buf: *mut c_void, cap: u64, len: *mut u64, timeout_ns: i64) -> c_int;
    pub fn shmchan_reader_attach_ex(ch: *mut shmchan_channel, flags: u32, out: *mut *mut shmchan_reader) -> c_int;
    pub fn shmchan_reader_outstanding(r: *const shmchan_reader) -> u64;
    pub fn shmchan_check(r: *mut shmchan_reader, pos: u64) -> c_int;
    pub fn shmchan_wait_readable(r: *mut shmchan_reader, timeout_ns: i64) -> c_int;
    pub fn shmchan_reader_lost(r: *const shmchan_reader) -> u64;
    pub fn shmchan_reader_position(r: *const shmchan_reader) -> u64;
    pub fn shmchan_reader_places(ch: *const shmchan_channel, out: *mut shmchan_place_info, max: u32) -> c_int;

    pub fn shmchan_state_read(
        ch: *mut shmchan_channel,
        buf: *mut c_void,
        cap: u64,
        len: *mut u64,
        version: *mut u64,
    ) -> c_int;
    pub fn shmchan_state_version(ch: *const shmchan_channel) -> u64;
    pub fn shmchan_state_wait(ch: *mut shmchan_channel, version: u64, timeout_ns: i64, now: *mut u64) -> c_int;

    /// test helper (src/sizes.c)
    pub fn shmchan_rs_sizeof(which: c_int) -> u64;
}
